//! Wakes the driver's thread out of poll(2) when a handle has queued work
//! for it (a message to send, a new interface selection, the stop): one
//! byte on a socket pair whose read end the driver polls with its sockets.
//! Wakes coalesce: while one is pending, further ones write nothing, so a
//! burst of `send` calls costs one system call, not one each.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub(crate) struct Wake {
    read: UnixDatagram,
    write: UnixDatagram,
    pending: AtomicBool,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Wake> {
        let (read, write) = UnixDatagram::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Wake {
            read,
            write,
            pending: AtomicBool::new(false),
        })
    }

    /// Makes the driver's next (or current) wait return. Call it after
    /// queuing the work, so that the driver, once awake, finds it.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A full pair (impossible: one byte at a time) would already
            // wake the driver.
            let _ = self.write.send(&[1]);
        }
    }

    /// The end to poll for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Called by the driver when the wake end was readable, before it looks
    /// for queued work: a wake from now on writes again. (A wake between the
    /// read and the flag's reset wrote nothing, but its work was queued
    /// before it, and the driver is about to look.)
    pub(crate) fn clear(&self) {
        let mut byte = [0u8; 16];
        while self.read.recv(&mut byte).is_ok() {}
        self.pending.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    fn readable(wake: &Wake) -> bool {
        let mut fds = [PollFd::new(wake.fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn wakes_coalesce_until_cleared() {
        let wake = Wake::new().unwrap();
        assert!(!readable(&wake));
        wake.wake();
        wake.wake();
        assert!(readable(&wake));
        wake.clear();
        assert!(!readable(&wake), "one byte for both wakes, read");
        wake.wake();
        assert!(readable(&wake), "after clear, a wake writes again");
    }
}
