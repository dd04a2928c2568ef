//! Deep nesting on the multi-threaded runtime (contract C9): Rust polls nested futures
//! recursively on the worker's stack, so the default worker stack must hold 5 000 nested scopes
//! and nurseries, and `Builder::thread_stack_size` must give more to those who need it.

mod common;

use std::future::Future;
use std::pin::Pin;

use common::*;
use trellis::{nursery, sleep_forever, CancelScope, Error, Flavor, Runtime};

type Boxed = Pin<Box<dyn Future<Output = Result<usize, Error>> + Send>>;

/// `depth` nested nurseries (`nurseries`) or cancel scopes, blocked in the innermost until the
/// outermost scope is cancelled; returns how many levels exited.
fn nest(depth: usize, nurseries: bool, outer: CancelScope) -> Boxed {
    Box::pin(async move {
        if depth == 0 {
            outer.cancel();
            sleep_forever().await?;
            unreachable!();
        }
        let inner = async move {
            let levels = nest(depth - 1, nurseries, outer).await?;
            Ok::<_, Error>(levels + 1)
        };
        if nurseries {
            let levels = nursery(|_n| inner).await?;
            Ok(levels)
        } else {
            match CancelScope::new().run(inner).await {
                Some(out) => out,
                None => unreachable!("only the outermost scope was cancelled"),
            }
        }
    })
}

/// Runs `depth` nested levels in a task on a worker of `rt`; returns the levels that exited
/// with the cancellation (all of them: none absorbs it but the outermost).
fn nested_on_a_worker(rt: Runtime, depth: usize, nurseries: bool) -> bool {
    rt.block_on(async move {
        nursery(|n| async move {
            let handle = n.spawn(async move {
                let outer = CancelScope::new();
                let out = outer.run(nest(depth, nurseries, outer.clone())).await;
                Ok::<_, Error>(out.is_none() && outer.cancelled_caught())
            })?;
            handle.await
        })
        .await
        .unwrap()
    })
}

// contract C9: 5 000 nested cancel scopes in a task on the multi-threaded runtime's default
// worker stack.
#[test]
fn five_thousand_nested_scopes_fit_the_default_worker_stack() {
    assert!(nested_on_a_worker(multi_thread(2), 5_000, false));
}

// contract C9: 5 000 nested nurseries in a task on the default worker stack.
#[test]
fn five_thousand_nested_nurseries_fit_the_default_worker_stack() {
    assert!(nested_on_a_worker(multi_thread(2), 5_000, true));
}

// `thread_stack_size` gives workers more room: 20 000 nested nurseries with 128 MiB.
#[test]
fn a_larger_worker_stack_holds_deeper_nesting() {
    let rt = Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(1)
        .thread_stack_size(128 << 20)
        .build()
        .unwrap();
    assert!(nested_on_a_worker(rt, 20_000, true));
}

// A zero stack size is refused with a clear error, not a crash at start-up.
#[test]
fn a_zero_worker_stack_size_is_refused() {
    let err = Runtime::builder().thread_stack_size(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        Error::InvalidArgument("thread_stack_size must be > 0").to_string()
    );
}
