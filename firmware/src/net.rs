//! Where the RPC endpoint listens: the Ethernet interface, and nothing else.
//!
//! `--interface eth0` binds to that interface's IPv4 address *and* to the
//! device itself (`SO_BINDTODEVICE`), so packets arriving on any other
//! interface (Wi-Fi, a USB gadget, a VPN) never reach the endpoint even if
//! they carry the right destination address. Wildcard addresses are refused.
//! `--listen ADDR` is for development and tests and accepts loopback only.
//!
//! [`peer_gone`] tells whether an HTTP client hung up while its request is
//! waiting on the owner's tap: the front layer owns the accepted socket
//! (`crate::front`), so a non-blocking peek says it directly. A peer that
//! closed shows end-of-stream (the kernel's `CLOSE_WAIT`), one that reset
//! shows an error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// Why the endpoint cannot listen where asked.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0:?} does not exist or has no IPv4 address; check `ip addr` and the cable")]
    NoAddress(String),
    #[error(
        "refusing to listen on wildcard address {0}: the endpoint must be bound to the Ethernet interface (--interface eth0)"
    )]
    Wildcard(SocketAddr),
    #[error(
        "--listen accepts loopback addresses only ({0} is not); use --interface to serve the Ethernet link"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// An interface by name and a port: its IPv4 address, bound to the device.
    Interface { name: String, port: u16 },
    /// A loopback address (development and tests only).
    Loopback(SocketAddr),
}

/// The first IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Result<Ipv4Addr, NetError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| NetError::Io {
        what: "the interface list".into(),
        source: e.into(),
    })?;
    for ifa in addrs {
        if ifa.interface_name != name {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Ok(sin.ip());
        }
    }
    Err(NetError::NoAddress(name.to_string()))
}

/// Check `addr` is allowed for `--listen`: loopback only, never a wildcard.
pub fn check_loopback(addr: SocketAddr) -> Result<(), NetError> {
    if addr.ip().is_unspecified() {
        return Err(NetError::Wildcard(addr));
    }
    if !addr.ip().is_loopback() {
        return Err(NetError::NotLoopback(addr));
    }
    Ok(())
}

/// The listening socket [`listen`] gives, as the device wiring holds it
/// until the front layer serves it.
pub type Listener = TcpListener;

/// Open the listening socket for `bind`.
pub fn listen(bind: &Bind) -> Result<TcpListener, NetError> {
    use socket2::{Domain, Socket, Type};
    let (addr, device) = match bind {
        Bind::Interface { name, port } => {
            let ip = interface_ipv4(name)?;
            (SocketAddr::new(IpAddr::V4(ip), *port), Some(name.as_str()))
        }
        Bind::Loopback(addr) => {
            check_loopback(*addr)?;
            (*addr, None)
        }
    };
    let io = |what: &str| {
        let what = format!("{what} {addr}");
        move |source| NetError::Io { what, source }
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(io("socket for"))?;
    socket
        .set_reuse_address(true)
        .map_err(io("SO_REUSEADDR on"))?;
    if let Some(dev) = device {
        socket
            .bind_device(Some(dev.as_bytes()))
            .map_err(io(&format!("SO_BINDTODEVICE {dev} for")))?;
    }
    socket.bind(&addr.into()).map_err(io("bind"))?;
    socket.listen(64).map_err(io("listen"))?;
    Ok(socket.into())
}

/// True when the client at the other end of `stream` no longer waits on
/// it: it closed its side (end-of-stream) or reset the connection. Bytes
/// waiting to be read (a pipelined request) mean it is still there. Never
/// blocks and never consumes anything.
pub fn peer_gone(stream: &TcpStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut byte = [0u8; 1];
    match recv(
        stream.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn wildcards_and_non_loopback_are_refused_for_listen() {
        for a in ["0.0.0.0:9051", "[::]:9051"] {
            let a: SocketAddr = a.parse().unwrap();
            assert!(matches!(
                listen(&Bind::Loopback(a)),
                Err(NetError::Wildcard(_))
            ));
        }
        let a: SocketAddr = "192.0.2.1:9051".parse().unwrap();
        assert!(matches!(
            listen(&Bind::Loopback(a)),
            Err(NetError::NotLoopback(_))
        ));
        assert!(check_loopback("127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(check_loopback("[::1]:1".parse().unwrap()).is_ok());
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let e = listen(&Bind::Interface {
            name: "nosuch0".into(),
            port: 9051,
        })
        .unwrap_err();
        assert!(
            matches!(e, NetError::NoAddress(ref n) if n == "nosuch0"),
            "{e}"
        );
        assert_eq!(interface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn a_client_that_hangs_up_is_seen_as_gone() {
        let listener = listen(&Bind::Loopback("127.0.0.1:0".parse().unwrap())).unwrap();
        let local = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(local).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(!peer_gone(&server_side), "a live client is not gone");
        // Unread bytes (a pipelined request) are not a hang-up, and the
        // peek leaves them in place.
        client.write_all(b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while server_side.peek(&mut [0u8; 1]).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the byte never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!peer_gone(&server_side));
        drop(client);
        // The kernel processes the FIN asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 1];
        server_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            (&server_side).read(&mut buf).unwrap(),
            1,
            "the byte is still there"
        );
        while !peer_gone(&server_side) {
            assert!(
                Instant::now() < deadline,
                "the hang-up was never seen within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
