//! The kernel's process-event connector: a netlink socket on which the kernel announces every
//! `exec` the moment it happens, so the app guard need not poll the process list.
//!
//! Wire layout (all native-endian, from `linux/netlink.h`, `linux/connector.h`,
//! `linux/cn_proc.h`):
//!
//! ```text
//! nlmsghdr   len u32 | type u16 | flags u16 | seq u32 | pid u32            (16 bytes)
//! cn_msg     idx u32 | val u32 | seq u32 | ack u32 | len u16 | flags u16  (20 bytes)
//! proc_event what u32 | cpu u32 | timestamp_ns u64                        (16 bytes)
//!            then, for PROC_EVENT_EXEC: process_pid u32 | process_tgid u32
//! ```
//!
//! The parsing is plain byte slicing with every length checked, so a short or odd datagram is
//! skipped, never a panic. Only the kernel can send on this group (the socket checks that the
//! sender is port 0), so an unexpected message means a newer kernel, not an attacker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `NETLINK_CONNECTOR` protocol, and the connector's process-events channel.
const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op`.
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
/// `enum what` in `struct proc_event`.
const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_EXEC: u32 = 2;

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const PROC_EVENT_HDR: usize = 16;
/// `NLMSG_NOOP`, `NLMSG_ERROR`, `NLMSG_DONE`, `NLMSG_OVERRUN`.
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

/// What one datagram from the connector told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A process replaced its program: `tgid` is the process, `pid` the thread that called
    /// exec (after exec they are the same).
    Exec { pid: u32, tgid: u32 },
    /// The kernel confirmed our subscription (`PROC_EVENT_NONE`, with an error code).
    Subscribed { err: u32 },
    /// The kernel lost messages: whatever we missed must be found by a full scan.
    Overrun,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The events in one datagram (which may hold several netlink messages). Anything short,
/// truncated or not from the process connector is skipped.
pub fn parse(datagram: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let Some(len) = u32_at(datagram, at).and_then(|l| usize::try_from(l).ok()) else {
            break;
        };
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            break;
        }
        let msg = &datagram[at..at + len];
        match u16_at(msg, 4) {
            Some(NLMSG_OVERRUN) => out.push(ProcEvent::Overrun),
            Some(NLMSG_DONE) | Some(NLMSG_NOOP) | None => {
                if let Some(ev) = parse_connector(&msg[NLMSG_HDRLEN..]) {
                    out.push(ev);
                }
            }
            Some(NLMSG_ERROR) | Some(_) => {}
        }
        // Messages are padded to 4 bytes (NLMSG_ALIGN).
        at += (len + 3) & !3;
    }
    out
}

fn parse_connector(cn: &[u8]) -> Option<ProcEvent> {
    if u32_at(cn, 0)? != CN_IDX_PROC || u32_at(cn, 4)? != CN_VAL_PROC {
        return None;
    }
    let data_len = usize::from(u16_at(cn, 16)?);
    let data = cn.get(CN_MSG_LEN..CN_MSG_LEN + data_len)?;
    let what = u32_at(data, 0)?;
    let body = data.get(PROC_EVENT_HDR..)?;
    match what {
        PROC_EVENT_EXEC => Some(ProcEvent::Exec {
            pid: u32_at(body, 0)?,
            tgid: u32_at(body, 4)?,
        }),
        PROC_EVENT_NONE => Some(ProcEvent::Subscribed {
            // `struct { __u32 err; } ack`
            err: u32_at(body, 0).unwrap_or(0),
        }),
        _ => None,
    }
}

/// The message asking the kernel to start (or stop) sending process events.
pub fn subscription(listen: bool) -> [u8; NLMSG_HDRLEN + CN_MSG_LEN + 4] {
    let mut m = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
    let total = m.len() as u32;
    m[0..4].copy_from_slice(&total.to_ne_bytes());
    m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    // flags, seq, pid stay 0: the kernel fills in the sender.
    let cn = NLMSG_HDRLEN;
    m[cn..cn + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m[cn + 4..cn + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m[cn + 16..cn + 18].copy_from_slice(&4u16.to_ne_bytes());
    let op = if listen {
        PROC_CN_MCAST_LISTEN
    } else {
        PROC_CN_MCAST_IGNORE
    };
    m[cn + CN_MSG_LEN..].copy_from_slice(&op.to_ne_bytes());
    m
}

/// A classic BPF socket filter passing only messages whose `proc_event.what` (at byte 36:
/// after the netlink and connector headers) is `PROC_EVENT_EXEC` or `PROC_EVENT_NONE`.
/// BPF loads words big-endian, while the kernel writes `what` in native order, hence the
/// byte swap. A message too short to hold `what` is dropped by the load itself.
pub fn exec_filter() -> [libc::sock_filter; 5] {
    let what = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    [
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            0,
            0,
            (NLMSG_HDRLEN + CN_MSG_LEN) as u32,
        ),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            2,
            0,
            what(PROC_EVENT_EXEC),
        ),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            1,
            0,
            what(PROC_EVENT_NONE),
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ]
}

/// A subscribed process-event socket. Needs root (`CAP_NET_ADMIN`) and the host's own
/// namespaces; otherwise [`ProcEvents::open`] fails and the guard scans instead.
pub struct ProcEvents {
    fd: OwnedFd,
}

/// Reading waits at most this long, so the guard's thread notices it should stop.
const RECV_TIMEOUT: Duration = Duration::from_millis(250);
/// How long to wait for the kernel to confirm a subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ProcEvents {
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket takes plain integers and returns a new fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        check(raw)?;
        // SAFETY: the fd was just created for us and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let me = Self { fd };
        // Only exec messages (and the subscription's acknowledgement) are wanted; the kernel
        // also announces every fork, exit, uid change... Dropping those in the kernel saves
        // two wake-ups per program started. Without the filter the guard still works, only
        // busier, so a failure here is not an error.
        let _ = me.attach_exec_filter();
        // A big receive buffer rides out bursts (a build starting hundreds of processes).
        // Forcing it past the system limit needs CAP_NET_ADMIN, which we have when the
        // connector works at all; if it fails, the normal buffer and the overrun scan remain.
        let size: libc::c_int = 4 << 20;
        if me.set_opt(libc::SO_RCVBUFFORCE, &size).is_err() {
            let _ = me.set_opt(libc::SO_RCVBUF, &size);
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: libc::suseconds_t::try_from(RECV_TIMEOUT.as_micros()).unwrap_or(250_000),
        };
        me.set_opt(libc::SO_RCVTIMEO, &timeout)?;
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value we then fill in.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        addr.nl_pid = 0; // let the kernel choose our port id
        // SAFETY: addr is a valid sockaddr_nl and the length passed is exactly its size.
        check(unsafe {
            libc::bind(
                me.fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        me.send(&subscription(true))?;
        me.wait_for_subscription()?;
        Ok(me)
    }

    /// The kernel acknowledges a subscription only when it will really send events: from a
    /// container's own pid or user namespace it silently ignores us. Without the
    /// acknowledgement the socket would stay quiet forever, so that counts as failure and the
    /// guard falls back to scanning.
    fn wait_for_subscription(&self) -> io::Result<()> {
        let deadline = std::time::Instant::now() + SUBSCRIBE_TIMEOUT;
        let mut buf = vec![0u8; 4096];
        while std::time::Instant::now() < deadline {
            for event in self.recv(&mut buf)? {
                match event {
                    ProcEvent::Subscribed { err: 0 } => return Ok(()),
                    ProcEvent::Subscribed { err } => {
                        return Err(io::Error::other(format!(
                            "the kernel refused process events (error {err})"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Err(io::Error::other(
            "the kernel did not confirm process events (is the agent inside a container?)",
        ))
    }

    fn attach_exec_filter(&self) -> io::Result<()> {
        let prog = exec_filter();
        let fprog = libc::sock_fprog {
            len: prog.len() as libc::c_ushort,
            filter: prog.as_ptr().cast_mut(),
        };
        // The kernel copies the program during the call, so `prog` need only outlive it.
        self.set_opt(libc::SO_ATTACH_FILTER, &fprog)
    }

    fn set_opt<T>(&self, opt: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: value points at a live T of the size passed; the kernel only reads it.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(value).cast::<libc::c_void>(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        })
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a live slice and the length passed is its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast::<libc::c_void>(),
                msg.len(),
                0,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits (at most a quarter of a second) for the next datagram and returns its events.
    /// `Ok(empty)` on a timeout; `Ok([Overrun])` when the kernel dropped events because we
    /// were too slow (`ENOBUFS`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Vec<ProcEvent>> {
        // SAFETY: buf is a live, writable slice and the length passed is its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Vec::new()),
                Some(libc::ENOBUFS) => Ok(vec![ProcEvent::Overrun]),
                _ => Err(e),
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        Ok(parse(&buf[..n]))
    }
}

impl Drop for ProcEvents {
    fn drop(&mut self) {
        // Older kernels count listeners per subscription, not per socket: say goodbye.
        let _ = self.send(&subscription(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, body: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&what.to_ne_bytes());
        data.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        data.extend_from_slice(&123u64.to_ne_bytes()); // timestamp
        data.extend_from_slice(body);
        let mut cn = Vec::new();
        cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        cn.extend_from_slice(&0u32.to_ne_bytes());
        cn.extend_from_slice(&0u32.to_ne_bytes());
        cn.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        cn.extend_from_slice(&0u16.to_ne_bytes());
        cn.extend_from_slice(&data);
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + cn.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&cn);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn exec(pid: u32, tgid: u32) -> Vec<u8> {
        let mut body = pid.to_ne_bytes().to_vec();
        body.extend_from_slice(&tgid.to_ne_bytes());
        message(PROC_EVENT_EXEC, &body)
    }

    // clause D4: the exec announcement names the process to check.
    #[test]
    fn d4_exec_events_are_read_from_the_connector_message() {
        assert_eq!(
            parse(&exec(4243, 4242)),
            vec![ProcEvent::Exec {
                pid: 4243,
                tgid: 4242
            }]
        );
        // Two messages in one datagram.
        let mut two = exec(1, 1);
        two.extend(exec(2, 2));
        assert_eq!(parse(&two).len(), 2);
        // The subscription acknowledgement.
        assert_eq!(
            parse(&message(PROC_EVENT_NONE, &0u32.to_ne_bytes())),
            vec![ProcEvent::Subscribed { err: 0 }]
        );
        // Fork (0x1) and exit (0x80000000) events are not for us.
        assert!(parse(&message(1, &[0; 16])).is_empty());
        assert!(parse(&message(0x8000_0000, &[0; 16])).is_empty());
    }

    #[test]
    fn d4_short_or_foreign_messages_are_skipped_without_panicking() {
        let full = exec(7, 7);
        for cut in 0..full.len() {
            // Every truncation parses to nothing (and never panics).
            assert!(parse(&full[..cut]).is_empty(), "cut at {cut}");
        }
        // A length field that claims more than there is.
        let mut lying = full.clone();
        lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&lying).is_empty());
        // A length smaller than a header would loop forever if trusted.
        let mut tiny = full.clone();
        tiny[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse(&tiny).is_empty());
        // Another connector channel.
        let mut other = full.clone();
        other[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&9u32.to_ne_bytes());
        assert!(parse(&other).is_empty());
        // A cn_msg length beyond the message.
        let mut long = full;
        long[NLMSG_HDRLEN + 16..NLMSG_HDRLEN + 18].copy_from_slice(&500u16.to_ne_bytes());
        assert!(parse(&long).is_empty());
        // The kernel saying it dropped messages.
        let mut overrun = vec![0u8; 16];
        overrun[0..4].copy_from_slice(&16u32.to_ne_bytes());
        overrun[4..6].copy_from_slice(&NLMSG_OVERRUN.to_ne_bytes());
        assert_eq!(parse(&overrun), vec![ProcEvent::Overrun]);
    }

    /// Runs the filter the way the kernel does, for the three instructions it uses.
    fn filter_passes(msg: &[u8]) -> bool {
        let prog = exec_filter();
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let at = i.k as usize;
                let Some(word) = msg.get(at..at + 4) else {
                    return false; // an out-of-bounds load drops the packet
                };
                a = u32::from_be_bytes(word.try_into().unwrap());
                pc += 1;
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += 1 + usize::from(if a == i.k { i.jt } else { i.jf });
            } else if code == libc::BPF_RET | libc::BPF_K {
                return i.k != 0;
            } else {
                panic!("unexpected instruction {code:#x}");
            }
        }
    }

    #[test]
    fn d4_the_socket_filter_passes_exec_and_acknowledgements_only() {
        assert!(filter_passes(&exec(5, 5)));
        assert!(filter_passes(&message(
            PROC_EVENT_NONE,
            &0u32.to_ne_bytes()
        )));
        assert!(!filter_passes(&message(1, &[0; 16]))); // fork
        assert!(!filter_passes(&message(0x8000_0000, &[0; 16]))); // exit
        assert!(!filter_passes(&exec(5, 5)[..30]));
    }

    #[test]
    fn the_subscription_message_is_laid_out_as_the_kernel_expects() {
        let m = subscription(true);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u16_at(&m, 4), Some(NLMSG_DONE));
        assert_eq!(u32_at(&m, 16), Some(CN_IDX_PROC));
        assert_eq!(u32_at(&m, 20), Some(CN_VAL_PROC));
        assert_eq!(u16_at(&m, 32), Some(4));
        assert_eq!(u32_at(&m, 36), Some(PROC_CN_MCAST_LISTEN));
        assert_eq!(u32_at(&subscription(false), 36), Some(PROC_CN_MCAST_IGNORE));
    }
}
