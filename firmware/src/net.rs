//! Where the RPC endpoint listens: the Ethernet interface, and nothing else.
//!
//! `--interface eth0` binds to that interface's IPv4 address *and* to the
//! device itself (`SO_BINDTODEVICE`), so packets arriving on any other
//! interface (Wi-Fi, a USB gadget, a VPN) never reach the endpoint even if
//! they carry the right destination address. Wildcard addresses are refused.
//! `--listen ADDR` is for development and tests and accepts loopback only.
//!
//! [`peer_gone`] tells whether an HTTP client hung up while its request is
//! waiting on the owner's tap: tiny_http does not hand out the socket, so
//! the kernel's connection table (`/proc/net/tcp*`) is read instead. A
//! connection the peer closed is in `CLOSE_WAIT` (or already gone).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

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

/// `/proc/net/tcp` spelling of an address: host-order hex of each 32-bit
/// word of the network-order address, then the port in hex.
fn proc_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(ip.octets()),
            addr.port()
        ),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            let words: String = o
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            format!("{words}:{:04X}", addr.port())
        }
    }
}

/// TCP state of the connection `local`↔`peer` from a `/proc/net/tcp*`
/// table, or `None` when it is not listed.
fn state_in(table: &str, local: &str, peer: &str) -> Option<u8> {
    table.lines().skip(1).find_map(|line| {
        let mut f = line.split_whitespace();
        let _slot = f.next()?;
        let (l, r, st) = (f.next()?, f.next()?, f.next()?);
        (l == local && r == peer).then(|| u8::from_str_radix(st, 16).ok())?
    })
}

const TCP_ESTABLISHED: u8 = 0x01;

/// True when the client at `peer` no longer waits on its connection to
/// `local`: the kernel lists it as half-closed (CLOSE_WAIT) or not at all.
/// When the table cannot be read the answer is `false` (keep waiting; the
/// prompt's own timeout still applies).
pub fn peer_gone(local: SocketAddr, peer: SocketAddr) -> bool {
    let file = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let Ok(table) = std::fs::read_to_string(file) else {
        return false;
    };
    state_in(&table, &proc_addr(local), &proc_addr(peer)) != Some(TCP_ESTABLISHED)
}

/// Our own socket for the connection `local`↔`peer`, found through the
/// kernel's connection table (its inode) and `/proc/self/fd`. Used only to
/// answer a request tiny_http cannot be allowed to drop (see
/// `rpc::handle_http`).
pub fn connection_fd(local: SocketAddr, peer: SocketAddr) -> Option<std::os::fd::RawFd> {
    let file = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let table = std::fs::read_to_string(file).ok()?;
    let (l, r) = (proc_addr(local), proc_addr(peer));
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r).then(|| f[9].to_string())
    })?;
    let want = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").ok()?.find_map(|e| {
        let e = e.ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        (target.to_str()? == want)
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
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
    fn proc_spelling_matches_the_kernel() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(proc_addr(a), "0100007F:1F90");
        }
        let table =
            "  sl  local_address rem_address   st\n   0: 0100007F:1F90 0100007F:C350 08 0\n";
        assert_eq!(state_in(table, "0100007F:1F90", "0100007F:C350"), Some(8));
        assert_eq!(state_in(table, "0100007F:1F90", "0100007F:C351"), None);
    }

    #[test]
    fn a_client_that_hangs_up_is_seen_as_gone() {
        let listener = listen(&Bind::Loopback("127.0.0.1:0".parse().unwrap())).unwrap();
        let local = listener.local_addr().unwrap();
        let client = TcpStream::connect(local).unwrap();
        let (mut server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(!peer_gone(local, peer), "a live client is not gone");
        drop(client);
        // The kernel processes the FIN asynchronously; wait until the read
        // side sees EOF, then the table must say CLOSE_WAIT.
        server_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(server_side.read(&mut buf).unwrap(), 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !peer_gone(local, peer) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(peer_gone(local, peer));
        let _ = server_side.write(b"x");
    }

    #[test]
    fn our_socket_for_a_connection_is_found() {
        use std::os::fd::AsRawFd;
        let listener = listen(&Bind::Loopback("127.0.0.1:0".parse().unwrap())).unwrap();
        let local = listener.local_addr().unwrap();
        let _client = TcpStream::connect(local).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        assert_eq!(connection_fd(local, peer), Some(server_side.as_raw_fd()));
        assert_eq!(connection_fd(local, "127.0.0.1:1".parse().unwrap()), None);
    }
}
