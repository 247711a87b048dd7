//! Service routing on this machine, in process: each Service port's virtual address (its
//! ClusterIP, and every node address at its nodePort) is a socket podvisor listens on, and
//! each connection is relayed to one ready endpoint picked at random, as kube-proxy picks one.
//!
//! Why in process rather than DNAT rules in the host's nftables: a DNAT from a pod to another
//! pod on the same bridge needs the host to forward (`net.ipv4.ip_forward=1`, a machine-wide
//! switch that makes a workstation a router for every interface) or `br_netfilter`; listening
//! touches nothing of the host but `/32` addresses on podvisor's own bridge, which go with it.
//! The cost is a copy per byte through podvisor (see `podvisor bench`), small beside what a
//! pod on one machine does with a connection.
//!
//! Several podvisor processes may share the bridge (two data directories, or the test suite):
//! every address one of them puts there is claimed with a file under `/run/podvisor/services`
//! naming the process, so none takes or removes another's, and a process that died leaves
//! claims the next one reaps, with their addresses.
//!
//! Only TCP is relayed (a UDP Service port gets no listener; cluster DNS answers itself).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::network::{BRIDGE, NetworkError};

/// The most connections all Service ports together relay at once (each holds two
/// descriptors); more wait to be accepted.
const MAX_CONNECTIONS: usize = 2048;

/// How long a relayed connection may stay silent both ways before it is closed.
const IDLE: Duration = Duration::from_secs(600);

/// How long a connection to an endpoint may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many endpoints a connection tries before it is refused.
const ATTEMPTS: usize = 3;

/// Where clients connect: a ClusterIP (or `0.0.0.0` for a nodePort) and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// The virtual address, or the unspecified address for every node address.
    pub ip: Ipv4Addr,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// Every frontend with the endpoints it relays to (empty: connections are refused).
pub type Routes = BTreeMap<Frontend, Vec<SocketAddr>>;

/// Why a frontend could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Its address could not be added to the bridge.
    #[error("adding {0} to {BRIDGE}: {1}")]
    Address(Ipv4Addr, NetworkError),
    /// Another podvisor process holds its address.
    #[error("{0} is held by another podvisor process (pid {1}): its Service is not routed here")]
    Held(Ipv4Addr, u32),
    /// Its socket could not be bound.
    #[error("listening on {0}: {1}")]
    Listen(Frontend, std::io::Error),
}

struct Listener {
    backends: watch::Sender<Vec<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listeners of every Service port, and the addresses they hold on the bridge.
#[derive(Default)]
pub struct Proxy {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    listeners: HashMap<Frontend, Listener>,
    addresses: BTreeSet<Ipv4Addr>,
    /// The host's own addresses (a pod's `hostIP`), listened on as they are: never claimed,
    /// added or removed. Loopback addresses are always among them.
    host: BTreeSet<Ipv4Addr>,
}

impl State {
    /// Whether `ip` is the host's own address (loopback, or one it was told of).
    fn is_host(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.host.contains(&ip)
    }
}

impl Proxy {
    /// A proxy serving nothing yet. Addresses that processes no longer running left on the
    /// bridge are removed first: after a crash, nothing stale answers.
    pub async fn open() -> Proxy {
        reap().await;
        Proxy::default()
    }

    /// Serves exactly `routes`: new frontends get their address and listener, known ones
    /// their new endpoints (connections in flight stay where they are), and frontends no
    /// longer wanted are closed and their addresses removed. Frontends that could not be
    /// served are returned; the others are served regardless.
    pub async fn set(&self, routes: &Routes) -> Vec<ProxyError> {
        let mut state = self.state.lock().await;
        let mut errors = Vec::new();
        state.listeners.retain(|f, _| routes.contains_key(f));
        let wanted: BTreeSet<Ipv4Addr> =
            routes.keys().map(|f| f.ip).filter(|ip| !ip.is_unspecified() && !state.is_host(*ip)).collect();
        for ip in wanted.difference(&state.addresses.clone()) {
            if let Err(holder) = claim(*ip) {
                errors.push(ProxyError::Held(*ip, holder));
                continue;
            }
            match add_address(*ip).await {
                Ok(()) => _ = state.addresses.insert(*ip),
                Err(e) => {
                    release(*ip);
                    errors.push(ProxyError::Address(*ip, e));
                }
            }
        }
        for (frontend, backends) in routes {
            if let Some(l) = state.listeners.get(frontend) {
                l.backends.send_if_modified(|b| {
                    let changed = b != backends;
                    b.clone_from(backends);
                    changed
                });
                continue;
            }
            if !frontend.ip.is_unspecified() && !state.is_host(frontend.ip) && !state.addresses.contains(&frontend.ip) {
                continue;
            }
            match TcpListener::bind(SocketAddr::new(IpAddr::V4(frontend.ip), frontend.port)).await {
                Ok(socket) => {
                    let (tx, rx) = watch::channel(backends.clone());
                    let task = tokio::spawn(serve(socket, rx));
                    state.listeners.insert(*frontend, Listener { backends: tx, task });
                }
                Err(e) => errors.push(ProxyError::Listen(*frontend, e)),
            }
        }
        let unused: Vec<Ipv4Addr> = state.addresses.difference(&wanted).copied().collect();
        for ip in unused {
            match del_address(ip).await {
                Ok(()) => {
                    state.addresses.remove(&ip);
                    release(ip);
                }
                Err(e) => tracing::warn!("the Service address {ip} is left on {BRIDGE}: {e}"),
            }
        }
        errors
    }

    /// Tells the proxy the host's own addresses: a frontend on one of them (a pod's host port
    /// on the node's address) is listened on without putting the address on the bridge.
    pub async fn set_host_addresses(&self, addresses: BTreeSet<Ipv4Addr>) {
        self.state.lock().await.host = addresses;
    }

    /// The frontends served now.
    pub async fn frontends(&self) -> Vec<Frontend> {
        let mut f: Vec<Frontend> = self.state.lock().await.listeners.keys().copied().collect();
        f.sort();
        f
    }

    /// Stops every listener and removes the addresses (`serve` stopping).
    pub async fn close(&self) {
        let errors = self.set(&Routes::new()).await;
        for e in errors {
            tracing::warn!("{e}");
        }
    }
}

/// The bridge's index through a netlink connection in this namespace, for a Service address.
async fn bridge(step: &str) -> Result<(crate::netlink::Netlink, u32), NetworkError> {
    let failed = |message: String| NetworkError::Command { step: step.to_string(), message };
    let host = crate::netlink::Netlink::connect().map_err(|e| failed(e.to_string()))?;
    let index = host.index(BRIDGE).await.ok_or_else(|| failed(format!("no bridge {BRIDGE}")))?;
    Ok((host, index))
}

/// Adds `ip/32` to podvisor's bridge (a Service's, or cluster DNS's, address).
pub async fn add_address(ip: Ipv4Addr) -> Result<(), NetworkError> {
    let step = "adding a Service address";
    let (host, index) = bridge(step).await?;
    host.add_address(index, ip, 32)
        .await
        .map_err(|e| NetworkError::Command { step: step.to_string(), message: e.to_string() })
}

/// Removes `ip/32` from podvisor's bridge.
pub async fn del_address(ip: Ipv4Addr) -> Result<(), NetworkError> {
    let step = "removing a Service address";
    let (host, index) = bridge(step).await?;
    host.del_address(index, ip)
        .await
        .map_err(|e| NetworkError::Command { step: step.to_string(), message: e.to_string() })
}

/// Where the claims of the bridge's service addresses are kept (gone with a reboot, as the
/// addresses are).
const CLAIMS: &str = "/run/podvisor/services";

/// Holds the claims directory's lock while it lives.
struct ClaimsLock(#[allow(dead_code)] std::fs::File);

fn lock_claims() -> Option<ClaimsLock> {
    std::fs::create_dir_all(CLAIMS).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(CLAIMS).join("lock"))
        .ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(ClaimsLock(file))
}

fn holder(ip: Ipv4Addr) -> Option<u32> {
    std::fs::read_to_string(Path::new(CLAIMS).join(ip.to_string())).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Claims `ip` for this process; the PID of another live process that holds it is the error.
pub fn claim(ip: Ipv4Addr) -> Result<(), u32> {
    claim_as(ip, false)
}

/// Claims `ip` for this process; with `fresh`, an address this process holds already is
/// refused too (it serves something else).
fn claim_as(ip: Ipv4Addr, fresh: bool) -> Result<(), u32> {
    let _lock = lock_claims();
    let me = std::process::id();
    match holder(ip) {
        Some(pid) if (pid != me || fresh) && alive(pid) => Err(pid),
        _ => {
            if let Err(e) = std::fs::write(Path::new(CLAIMS).join(ip.to_string()), me.to_string()) {
                tracing::warn!("claiming {ip} in {CLAIMS}: {e}");
            }
            Ok(())
        }
    }
}

/// Gives up this process's claim on `ip`.
pub fn release(ip: Ipv4Addr) {
    let _lock = lock_claims();
    if holder(ip) == Some(std::process::id())
        && let Err(e) = std::fs::remove_file(Path::new(CLAIMS).join(ip.to_string()))
    {
        tracing::warn!("the claim of {ip} in {CLAIMS} is left: {e}");
    }
}

/// The first of `preferred` that no live process holds, else such a free address of `range`
/// (but its first and last), claimed. An address this process holds already is not free: two
/// services of one process (cluster DNS, the `kubernetes` Service) never share one.
pub fn claim_one(preferred: &[Ipv4Addr], range: (Ipv4Addr, u8)) -> Option<Ipv4Addr> {
    if let Some(ip) = preferred.iter().find(|ip| claim_as(**ip, true).is_ok()) {
        return Some(*ip);
    }
    let size = 1u32.checked_shl(32 - u32::from(range.1.min(32))).unwrap_or(0);
    let base = u32::from(range.0);
    (2..size.saturating_sub(1)).map(|off| Ipv4Addr::from(base + size - 1 - off)).find(|ip| claim_as(*ip, true).is_ok())
}

/// Claims an address for one of this process's services, as [`claim_one`] does, preferring the
/// one `data_dir` remembers in its file `remembered` (so that pods taken over after a restart
/// keep theirs), then `preferred`; the address claimed is remembered.
pub fn claim_remembered(
    data_dir: &Path,
    remembered: &str,
    preferred: Ipv4Addr,
    range: (Ipv4Addr, u8),
) -> Option<Ipv4Addr> {
    let file = data_dir.join(remembered);
    let last: Option<Ipv4Addr> = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok());
    let wanted: Vec<Ipv4Addr> = last.into_iter().chain([preferred]).collect();
    let ip = claim_one(&wanted, range)?;
    if let Err(e) = std::fs::write(&file, ip.to_string()) {
        tracing::warn!("{}: {e}", file.display());
    }
    Some(ip)
}

/// Removes the addresses, and claims, of podvisor processes that are gone. The claims' lock is
/// held throughout, so no process claims an address between its check and its removal.
async fn reap() {
    let _lock = lock_claims();
    let stale: Vec<Ipv4Addr> = std::fs::read_dir(CLAIMS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| holder(*ip).is_none_or(|pid| !alive(pid)))
        .collect();
    if stale.is_empty() {
        return;
    }
    let on_bridge = bridge_addresses().await;
    for ip in stale {
        if on_bridge.contains(&ip)
            && let Err(e) = del_address(ip).await
        {
            tracing::warn!("a Service address {ip} a stopped process left is still on {BRIDGE}: {e}");
            continue;
        }
        if let Err(e) = std::fs::remove_file(Path::new(CLAIMS).join(ip.to_string())) {
            tracing::warn!("the stale claim of {ip} in {CLAIMS} is left (reaped next time): {e}");
        }
    }
}

/// The single addresses (`/32`) on the bridge.
async fn bridge_addresses() -> Vec<Ipv4Addr> {
    let Ok((host, index)) = bridge("listing the bridge's addresses").await else { return Vec::new() };
    host.addresses(index).await.into_iter().filter(|(_, prefix)| *prefix == 32).map(|(ip, _)| ip).collect()
}

/// The relays of every frontend of the process.
fn slots() -> Arc<Semaphore> {
    static SLOTS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| Arc::new(Semaphore::new(MAX_CONNECTIONS))).clone()
}

/// Accepts connections and relays each to an endpoint.
async fn serve(socket: TcpListener, backends: watch::Receiver<Vec<SocketAddr>>) {
    let slots = slots();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let client = match socket.accept().await {
            Ok((client, _)) => client,
            // Out of descriptors, or a connection reset before it was accepted: go on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let candidates = backends.borrow().clone();
        tokio::spawn(async move {
            let _permit = permit;
            relay(client, candidates).await;
        });
    }
}

/// Relays one client to one of `candidates`, tried in a random order; with none reachable the
/// client is reset, as a Service without endpoints refuses connections.
async fn relay(mut client: TcpStream, mut candidates: Vec<SocketAddr>) {
    shuffle(&mut candidates);
    for to in candidates.into_iter().take(ATTEMPTS) {
        if let Ok(Ok(mut upstream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
            _ = client.set_nodelay(true);
            _ = upstream.set_nodelay(true);
            // Either side closing or failing ends the relay (nothing is left to report), and so
            // does a connection silent both ways for ten minutes.
            idle_bounded_copy(&mut client, &mut upstream).await;
            return;
        }
    }
    // A reset, not a clean close: the client sees "connection refused"-like failure at once.
    _ = client.set_zero_linger();
}

/// Copies both ways until either side closes; each period of [`IDLE`] must see traffic.
async fn idle_bounded_copy(client: &mut TcpStream, upstream: &mut TcpStream) {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let (mut a, mut b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut up_open, mut down_open) = (true, true);
    while up_open || down_open {
        tokio::select! {
            r = cr.read(&mut a), if up_open => match r {
                Ok(0) | Err(_) => { up_open = false; _ = uw.shutdown().await; }
                Ok(n) => if uw.write_all(&a[..n]).await.is_err() { return },
            },
            r = ur.read(&mut b), if down_open => match r {
                Ok(0) | Err(_) => { down_open = false; _ = cw.shutdown().await; }
                Ok(n) => if cw.write_all(&b[..n]).await.is_err() { return },
            },
            () = tokio::time::sleep(IDLE) => return,
        }
    }
}

/// Shuffles `v` with the kernel's randomness (Fisher–Yates).
fn shuffle(v: &mut [SocketAddr]) {
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 8];
        if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
            return;
        }
        let j = (u64::from_ne_bytes(b) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    _ = s.write_all(format!("{tag}:{}", String::from_utf8_lossy(&buf[..n])).as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn ask(port: u16) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"hi").await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    /// A frontend on every address (a nodePort) relays to its endpoints, follows their change
    /// at once, and refuses connections once it has none.
    #[tokio::test]
    async fn a_frontend_relays_to_its_current_endpoints() {
        let (a, b) = (echo_server("a").await, echo_server("b").await);
        let port = {
            let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = Proxy::default();
        let front = Frontend { ip: Ipv4Addr::UNSPECIFIED, port };
        assert!(proxy.set(&Routes::from([(front, vec![a])])).await.is_empty());
        assert_eq!(ask(port).await.unwrap(), "a:hi");
        assert!(proxy.set(&Routes::from([(front, vec![b])])).await.is_empty());
        assert_eq!(ask(port).await.unwrap(), "b:hi");
        assert!(proxy.set(&Routes::from([(front, vec![])])).await.is_empty());
        assert_eq!(ask(port).await.unwrap_or_default(), "", "no endpoints: nothing answers");
        assert_eq!(proxy.frontends().await, [front]);
        proxy.close().await;
        assert!(ask(port).await.is_err(), "closed: refused");
    }

    /// An endpoint that refuses is skipped for one that answers.
    #[tokio::test]
    async fn a_refusing_endpoint_is_skipped() {
        let good = echo_server("good").await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let port = {
            let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = Proxy::default();
        let front = Frontend { ip: Ipv4Addr::UNSPECIFIED, port };
        proxy.set(&Routes::from([(front, vec![dead, good])])).await;
        for _ in 0..5 {
            assert_eq!(ask(port).await.unwrap(), "good:hi");
        }
    }

    /// Two services of one process asking for the same preferred address get two addresses.
    #[test]
    fn one_process_never_claims_one_address_for_two_services() {
        if !is_root() {
            return;
        }
        // A range of its own (TEST-NET-2), so that no server's claims are touched.
        let range = (Ipv4Addr::new(198, 51, 100, 0), 29);
        let preferred = Ipv4Addr::new(198, 51, 100, 1);
        let first = claim_one(&[preferred], range).expect("an address");
        let second = claim_one(&[preferred], range).expect("another address");
        assert_eq!(first, preferred);
        assert_ne!(first, second, "the second service gets an address of its own");
        assert!(claim(first).is_ok(), "a service may claim its own address again");
        release(first);
        release(second);
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }
}
