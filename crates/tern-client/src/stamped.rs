//! Plain TCP that keeps the kernel's receive time of what it reads (Linux `SO_TIMESTAMPNS`):
//! when the bytes reached this machine, before this process got round to them. A load
//! generator measures a broker's latency with it, without its own wake-ups and backlog.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The most one read takes: what a busy connection's reads reach.
const MAX_READ: usize = 64 * 1024;

/// A TCP stream whose reads record the kernel's receive time.
pub(crate) struct StampedTcp {
    tcp: TcpStream,
    /// Where `recvmsg` writes, zeroed once as it grows: reading into the caller's buffer
    /// directly would zero it on every read (safe code cannot hand the kernel memory that is
    /// not initialised).
    scratch: Vec<u8>,
    /// Room for one `SCM_TIMESTAMPNS` control message.
    control: Vec<u8>,
    /// Receive time of the last bytes read, in nanoseconds since the Unix epoch.
    received_ns: Option<u64>,
}

impl StampedTcp {
    /// Asks the kernel for receive times on `tcp`.
    pub(crate) fn new(tcp: TcpStream) -> io::Result<Self> {
        setsockopt(&tcp, sockopt::ReceiveTimestampns, &true)?;
        Ok(Self {
            tcp,
            scratch: Vec::new(),
            control: nix::cmsg_space!(nix::sys::time::TimeSpec),
            received_ns: None,
        })
    }

    /// When the last bytes read reached the machine, in nanoseconds since the Unix epoch
    /// (`CLOCK_REALTIME`). A read that takes several segments reports the last one's. `None`
    /// for bytes the kernel did not time: it turns timestamping on for the whole system a
    /// moment after the first socket asks (a deferred job), so the first reads may have none.
    pub(crate) fn received_ns(&self) -> Option<u64> {
        self.received_ns
    }
}

/// One `recvmsg` of at most `want` bytes into `scratch`: how many, and their receive time.
fn receive(
    fd: RawFd,
    scratch: &mut Vec<u8>,
    control: &mut [u8],
    want: usize,
) -> io::Result<(usize, Option<u64>)> {
    if scratch.len() < want {
        scratch.resize(want, 0);
    }
    let mut iov = [IoSliceMut::new(&mut scratch[..want])];
    let msg = recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::empty())?;
    let stamp = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(ts) => {
            let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
            u64::try_from(ns).ok()
        }
        _ => None,
    });
    Ok((msg.bytes, stamp))
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(MAX_READ);
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        let Self {
            tcp,
            scratch,
            control,
            received_ns,
        } = this;
        let fd = tcp.as_raw_fd();
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let mut short = None;
            let read = tcp.try_io(Interest::READABLE, || {
                let (n, stamp) = receive(fd, scratch, control, want)?;
                if n > 0 && n < want {
                    // Less than asked for: the socket is empty, as a read that would block
                    // would say. Saying it now (`try_io` then clears the readiness) saves that
                    // read, as tokio's own TCP reads do.
                    short = Some((n, stamp));
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, stamp))
            });
            let (n, stamp) = match (read, short) {
                (_, Some(got)) | (Ok(got), None) => got,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
            };
            buf.put_slice(&scratch[..n]);
            *received_ns = stamp;
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
