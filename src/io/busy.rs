//! Marks one direction of a shared descriptor busy, so that two tasks waiting in the same
//! direction get an error instead of one of them never being woken: the reactor keeps one waker
//! per direction. trio raises `BusyResourceError` in the same case.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Busy(AtomicBool);

pub(crate) struct BusyGuard<'a>(&'a AtomicBool);

impl Busy {
    pub(crate) const fn new() -> Self {
        Busy(AtomicBool::new(false))
    }

    /// Marks the direction busy until the guard drops; an error carrying
    /// [`Error::BusyResource`](crate::Error::BusyResource) if another task holds it.
    pub(crate) fn enter(&self) -> io::Result<BusyGuard<'_>> {
        if self.0.swap(true, Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                crate::Error::BusyResource,
            ));
        }
        Ok(BusyGuard(&self.0))
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
