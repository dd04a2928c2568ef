//! `compat::tracing::TaskSpans`: each task is a `tracing` span named `task` with its id and
//! name, parented to the span of the task that spawned it, entered around each of its polls and
//! closed once, when the task exits.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use trellis::compat::tracing::TaskSpans;
use trellis::{checkpoint, nursery, Error, Flavor, Runtime};

/// Records what the instrument does to spans, by task name (clones share the record).
#[derive(Clone, Default)]
struct Recorder {
    next: Arc<AtomicU64>,
    names: Arc<Mutex<HashMap<u64, String>>>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Reads the `task.name` field of a span.
struct NameOf(Option<String>);

impl Visit for NameOf {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "task.name" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

impl Recorder {
    fn name(&self, id: &Id) -> String {
        self.names.lock().unwrap()[&id.into_u64()].clone()
    }
    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut name = NameOf(None);
        span.record(&mut name);
        let name = name.0.unwrap_or_else(|| "?".into());
        let parent = span.parent().map(|p| self.name(p));
        self.push(format!("new {name} under {parent:?}"));
        self.names.lock().unwrap().insert(id, name);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        self.push(format!("enter {}", self.name(span)));
    }
    fn exit(&self, span: &Id) {
        self.push(format!("exit {}", self.name(span)));
    }
    fn try_close(&self, span: Id) -> bool {
        self.push(format!("close {}", self.name(&span)));
        true
    }
}

#[test]
fn each_task_is_a_span_entered_for_its_polls_and_closed_once() {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        let rt = Runtime::builder()
            .flavor(Flavor::CurrentThread)
            .instrument(Arc::new(TaskSpans::new()))
            .build()
            .unwrap();
        rt.block_on(async {
            nursery(|n| async move {
                n.spawn_named("outer", async {
                    nursery(|inner| async move {
                        inner.spawn_named("inner", async {
                            checkpoint().await?;
                            Ok(())
                        })?;
                        Ok::<_, Error>(())
                    })
                    .await
                    .map_err(Error::from)
                })?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
    });
    let log = recorder.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "new outer under None",
            "enter outer",
            // Spawned during outer's poll: its span hangs under outer's.
            "new inner under Some(\"outer\")",
            "exit outer",
            "enter inner",
            "exit inner",
            "enter inner",
            "exit inner",
            "close inner",
            "enter outer",
            "exit outer",
            "close outer",
        ]
    );
}
