//! Upstream sockets that are hard to spoof: every forwarded query leaves from its own socket,
//! on a port the kernel picks at random, connected to the one upstream it asks (so the kernel
//! drops answers from anyone else), under a random id. One epoll set tells the answer reader
//! which sockets have something to read.
//!
//! Forging an answer then means guessing the port and the id together (about 2^31 tries,
//! where one long-lived socket and sequential ids left a handful).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An epoll set of upstream sockets, each registered under a token.
pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub fn new() -> std::io::Result<Poller> {
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(Poller {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `socket` for answers (level-triggered: an answer that arrived before this call
    /// is still reported). Closing the socket removes it.
    pub fn watch(&self, socket: &UdpSocket, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open and `event` is a valid epoll_event.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                &raw mut event,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The tokens of sockets with something to read, waiting at most `timeout`.
    pub fn wait(&self, timeout: Duration, tokens: &mut Vec<u64>) {
        tokens.clear();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a writable array of the length passed.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        for e in events.iter().take(usize::try_from(n).unwrap_or(0)) {
            tokens.push(e.u64);
        }
    }
}

/// A fresh socket on a random port, connected to `target`, non-blocking, with the agent's
/// firewall mark when given.
pub fn socket_for(target: SocketAddr, mark: Option<u32>) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Port 0: Linux picks the port at random from the ephemeral range for each bind.
    let socket = UdpSocket::bind(any)?;
    if let Some(mark) = mark {
        set_mark(&socket, mark);
    }
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Marks the agent's own upstream traffic (so it can be told apart in the firewall).
pub fn set_mark(socket: &impl AsRawFd, mark: u32) {
    // SAFETY: setsockopt with a valid fd and a u32 option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&raw const mark).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "could not mark the web filter's upstream socket: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Lets the resolver hold one socket per query in flight: the soft limit on open files goes
/// up to the hard limit (systemd's default soft limit is 1,024).
pub fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Random source ports: two queries never share a socket, and ports differ.
    #[test]
    fn wb1_each_upstream_socket_has_its_own_random_port() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ports: std::collections::HashSet<u16> = (0..50)
            .map(|_| {
                socket_for(target, None)
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        assert!(ports.len() > 40, "{} distinct ports of 50", ports.len());
    }

    #[test]
    fn the_poller_reports_a_socket_with_an_answer() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = socket_for(server.local_addr().unwrap(), None).unwrap();
        let poller = Poller::new().unwrap();
        poller.watch(&s, 7).unwrap();
        let mut tokens = Vec::new();
        poller.wait(Duration::from_millis(10), &mut tokens);
        assert!(tokens.is_empty());
        s.send(b"q").unwrap();
        let mut buf = [0u8; 4];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(b"a", from).unwrap();
        poller.wait(Duration::from_secs(5), &mut tokens);
        assert_eq!(tokens, [7]);
    }
}
