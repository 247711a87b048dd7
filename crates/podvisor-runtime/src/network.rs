//! The pod network: every pod that does not use the host's network gets its own address on a
//! Linux bridge of the host, through a veth pair whose pod end is `eth0`.
//!
//! Pods reach each other and the host (at the bridge's address, the pods' default gateway).
//! Traffic beyond the host is not translated: a host that should route it needs IP forwarding
//! and a masquerading rule of its own.
//!
//! Addresses are claimed with one file per address under `/run/podvisor/networks/<bridge>`, so
//! every podvisor process on the machine shares one allocation, and the claims go with a reboot
//! as the namespaces do. A claim names the network namespace that holds the address; a claim
//! whose namespace is gone is free again.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::namespaces::Veth;
use crate::netlink::Netlink;
use std::str::FromStr;
use std::sync::Arc;

/// The bridge pods are attached to.
pub const BRIDGE: &str = "podvisor0";

/// The subnet pods get addresses from when none is named.
pub const DEFAULT_SUBNET: &str = "10.244.0.0/16";

/// Errors setting up or reading the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A subnet as given on the command line is malformed.
    #[error("invalid pod network {given:?}: {why} (expected an IPv4 subnet such as 10.244.0.0/16, or none)")]
    Subnet {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// Every address of the subnet is claimed.
    #[error("no free address left in the pod network {0}")]
    Exhausted(Subnet),
    /// The subnet is already routed elsewhere on this machine, or the bridge serves another.
    #[error("the pod network {subnet} overlaps {what}: choose another subnet with --pod-network")]
    Overlap {
        /// The pod network.
        subnet: Subnet,
        /// What it overlaps.
        what: String,
    },
    /// A claim file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A netlink request (or the step around it) failed.
    #[error("{step}: {message} (podvisor needs root to change the machine's links)")]
    Command {
        /// What it was doing.
        step: String,
        /// What the kernel said.
        message: String,
    },
}

/// An IPv4 subnet: its network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The mask of the prefix.
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first usable address: the bridge's, the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The addresses pods may get, as the first and how many: all but the network address,
    /// the gateway and the broadcast address.
    fn pod_range(&self) -> (u32, u32) {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | !Self::mask(self.prefix);
        (first, broadcast - first)
    }

    /// Whether the two subnets share an address.
    fn overlaps(&self, other: &Subnet) -> bool {
        let mask = Self::mask(self.prefix.min(other.prefix));
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| NetworkError::Subnet { given: s.to_string(), why: why.to_string() };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| bad("no prefix length"))?;
        let network: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("the prefix length is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 30"));
        }
        if network.is_loopback() || network.is_multicast() || network.is_unspecified() || network.octets()[0] >= 240 {
            return Err(bad("not a unicast subnet"));
        }
        if u32::from(network) & !Self::mask(prefix) != 0 {
            let base = Ipv4Addr::from(u32::from(network) & Self::mask(prefix));
            return Err(bad(&format!("host bits are set (the subnet is {base}/{prefix})")));
        }
        Ok(Subnet { network, prefix })
    }
}

/// What a pod's sandbox holds of the network, kept with the sandbox so it can be released by a
/// later process too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The claim file of the address.
    pub claim: PathBuf,
}

/// The pod network of this machine: a bridge and the subnet its pods take addresses from.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    subnet: Subnet,
    claims: PathBuf,
    /// Whether this process has set up the bridge already.
    ready: Arc<tokio::sync::Mutex<bool>>,
}

impl PodNetwork {
    /// The network on [`BRIDGE`] with addresses from `subnet`.
    pub fn new(subnet: Subnet) -> Self {
        let claims = Path::new("/run/podvisor/networks").join(BRIDGE);
        PodNetwork { subnet, claims, ready: Arc::default() }
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// Claims an address for the network namespace bound (or being bound) at `netns`: the
    /// claim may be made while the namespace is made (see [`being_made`]). Release it with
    /// [`detach`].
    ///
    /// It blocks for a few file operations under a lock every claimant holds as briefly; a
    /// thread of its own would cost more than the claim.
    pub fn claim(&self, netns: &Path) -> Result<Attachment, NetworkError> {
        let alive = |p: &Path| is_namespace(p) || being_made(p);
        let (ip, claim) = claim(&self.claims, &self.subnet, netns, &alive)?;
        Ok(Attachment { ip, claim })
    }

    /// Connects the namespace bound at `netns` to the bridge with the claimed address of
    /// `a`, through `veth` if the namespace came with its pair (see [`crate::namespaces`]);
    /// `inside` is a netlink connection in the namespace. The bridge's end is set up while the
    /// pod's end is addressed and routed. On failure the claim is released and nothing stays
    /// connected.
    pub async fn connect(
        &self,
        a: &Attachment,
        netns: &Path,
        inside: &Netlink,
        veth: Option<Veth>,
    ) -> Result<(), NetworkError> {
        let wired = match self.ensure_bridge().await {
            Ok(bridge) => self.wire(netns, a.ip, inside, bridge, veth).await,
            Err(e) => Err(e),
        };
        if wired.is_err() {
            let (a, ns) = (a.clone(), netns.to_path_buf());
            let _ = tokio::task::spawn_blocking(move || detach(&a, &ns)).await;
        }
        wired
    }

    /// Connects the namespace at `netns` to the bridge as `ip`. A pair made ahead has its host
    /// end renamed after the address; otherwise the pair is made here.
    async fn wire(
        &self,
        netns: &Path,
        ip: Ipv4Addr,
        pod: &Netlink,
        bridge: u32,
        made: Option<Veth>,
    ) -> Result<(), NetworkError> {
        let failed = |step: &str| {
            let step = step.to_string();
            move |e: String| NetworkError::Command { step: step.clone(), message: e }
        };
        let host = Netlink::connect().map_err(|e| failed("netlink")(e.to_string()))?;
        let name = format!("pv{:08x}", u32::from(ip));
        // Left by a namespace that is gone: its address is free, so its link is stale.
        if Path::new("/sys/class/net").join(&name).exists()
            && let Some(i) = host.index(&name).await
        {
            let _ = host.delete(i).await;
        }
        let connecting = failed("connecting the pod to the bridge");
        let setting = failed("setting up the pod's eth0");
        if made.is_none() {
            let ns = std::fs::File::open(netns).map_err(|e| connecting(format!("{}: {e}", netns.display())))?;
            host.add_veth_into(&name, "eth0", &ns, bridge).await.map_err(|e| connecting(e.to_string()))?;
        }
        let host_end = async {
            match &made {
                Some(pair) => host.rename_up(pair.host_index, &name, bridge).await,
                None => host.up_by_name(&name).await,
            }
        };
        let pod_end = async {
            let index = match &made {
                Some(pair) => pair.eth0_index,
                None => pod.index("eth0").await.ok_or_else(|| setting("eth0 is not in the namespace".into()))?,
            };
            // Sent together, handled in order: the kernel handles a socket's requests as they
            // are sent, so the route finds its gateway on the addressed link that is up.
            let (addressed, up, routed) = tokio::join!(
                pod.add_address(index, ip, self.subnet.prefix),
                pod.up(index),
                pod.add_default_route(self.subnet.gateway())
            );
            addressed.and(up).and(routed).map_err(|e| setting(e.to_string()))
        };
        let (host_end, pod_end) = tokio::join!(host_end, pod_end);
        host_end.map_err(|e| connecting(e.to_string()))?;
        pod_end
    }

    /// Creates the bridge with the gateway address, once per process (and again if it was
    /// removed meanwhile), after checking that the subnet is free on this machine. Returns the
    /// bridge's index.
    pub async fn ensure_bridge(&self) -> Result<u32, NetworkError> {
        let mut ready = self.ready.lock().await;
        // Read each time (a file, not a request): a bridge made again has another index.
        let current = std::fs::read_to_string(Path::new("/sys/class/net").join(BRIDGE).join("ifindex"))
            .ok()
            .and_then(|i| i.trim().parse::<u32>().ok());
        let exists = current.is_some();
        if *ready && let Some(index) = current {
            return Ok(index);
        }
        let failed = |step: &str, e: String| NetworkError::Command { step: step.to_string(), message: e };
        let host = Netlink::connect().map_err(|e| failed("netlink", e.to_string()))?;
        self.check_overlaps(&host).await?;
        if !exists {
            let made = host.add_bridge(BRIDGE).await;
            // Another process may have made it at the same moment.
            if let Err(e) = made
                && !Path::new("/sys/class/net").join(BRIDGE).exists()
            {
                return Err(failed("creating the bridge", e.to_string()));
            }
        }
        let bridge = host.index(BRIDGE).await.ok_or_else(|| failed("setting up the bridge", "it is gone".into()))?;
        host.add_address(bridge, self.subnet.gateway(), self.subnet.prefix)
            .await
            .map_err(|e| failed("setting up the bridge", e.to_string()))?;
        host.up(bridge).await.map_err(|e| failed("setting up the bridge", e.to_string()))?;
        *ready = true;
        Ok(bridge)
    }
}

impl PodNetwork {
    /// Refuses a subnet that a route of this machine (but the bridge's own) already covers,
    /// and a bridge that already serves another subnet.
    async fn check_overlaps(&self, host: &Netlink) -> Result<(), NetworkError> {
        let overlap = |what: String| NetworkError::Overlap { subnet: self.subnet, what };
        let names = host.names().await;
        let name = |index: Option<u32>| {
            index.and_then(|i| names.iter().find(|(n, _)| *n == i)).map(|(_, s)| s.clone()).unwrap_or_default()
        };
        for (dst, prefix, oif) in host.routes().await {
            let dev = name(oif);
            let theirs = Subnet { network: dst, prefix: prefix.min(32) };
            if dev != BRIDGE && self.subnet.overlaps(&theirs) {
                let dst = if prefix == 32 { format!("{dst}/32") } else { format!("{dst}/{prefix}") };
                return Err(overlap(format!("the route to {dst} on {dev}")));
            }
        }
        let Some(bridge) = names.iter().find(|(_, n)| n == BRIDGE).map(|(i, _)| *i) else { return Ok(()) };
        for (local, prefix) in host.addresses(bridge).await {
            // A single address is a Service's or cluster DNS's (see `services`), not a subnet.
            if prefix == 32 {
                continue;
            }
            if local != self.subnet.gateway() || prefix != self.subnet.prefix {
                return Err(overlap(format!(
                    "the bridge {BRIDGE}, which serves {local}/{prefix} (another podvisor with another --pod-network?)"
                )));
            }
        }
        Ok(())
    }
}

/// Releases what [`PodNetwork::claim`] and [`PodNetwork::connect`] made for the namespace at `netns`: its veth pair and
/// the address's claim, unless the address was claimed again by another namespace since. The
/// pair is removed from inside the namespace, while it lives (once it is gone, so is the pair),
/// so a link another pod now has is never touched. It runs commands: call it off the async
/// threads.
pub fn detach(a: &Attachment, netns: &Path) {
    if is_namespace(netns) {
        // The pair goes with the namespace anyway; deleting it first frees the host end at once.
        let deleted = crate::netlink::blocking_in(netns, |n| {
            Box::pin(async move {
                if let Some(i) = n.index("eth0").await {
                    let _ = n.delete(i).await;
                }
            })
        });
        if let Err(e) = deleted {
            tracing::warn!("the veth pair of {} is left until its namespace goes: {e}", netns.display());
        }
    }
    if let Err(e) = release(&a.claim, netns) {
        tracing::warn!("the address claim {} is left behind: {e}", a.claim.display());
    }
}

/// How long a claim's owner may be a plain file, not yet a namespace: the sandbox claims its
/// address while its namespaces are being made. An owner older than this never became one
/// (its process ended first), and its address is free again.
const BEING_MADE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `owner` is a namespace's file still being made: a plain file made less than
/// [`BEING_MADE`] ago.
pub(crate) fn being_made(owner: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(owner) else { return false };
    let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
    meta.is_file() && age.is_some_and(|a| a < BEING_MADE)
}

/// Holds the lock of a claims directory while it lives (the lock goes with the file).
struct Locked {
    _file: std::fs::File,
}

impl Locked {
    fn take(dir: &Path) -> Result<Locked, NetworkError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| NetworkError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("lock");
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| NetworkError::Io { path, error: e.into() })?;
        Ok(Locked { _file: file })
    }
}

/// Claims the next free address of `subnet` for the namespace `owner`, after the one claimed
/// last (so a released address is not handed out again at once). A claim whose owner is not
/// `alive` is free. Returns the address and its claim file.
fn claim(
    dir: &Path,
    subnet: &Subnet,
    owner: &Path,
    alive: &dyn Fn(&Path) -> bool,
) -> Result<(Ipv4Addr, PathBuf), NetworkError> {
    let _lock = Locked::take(dir)?;
    let last_file = dir.join("last");
    let last: Option<Ipv4Addr> = std::fs::read_to_string(&last_file).ok().and_then(|s| s.trim().parse().ok());
    let (first, count) = subnet.pod_range();
    let start = last.map(u32::from).filter(|l| l.wrapping_sub(first) < count).map_or(0, |l| l - first + 1);
    for i in 0..count {
        let ip = Ipv4Addr::from(first + (start + i) % count);
        let path = dir.join(ip.to_string());
        let free = match std::fs::read_to_string(&path) {
            Ok(holder) => !alive(Path::new(holder.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => return Err(NetworkError::Io { path, error }),
        };
        if free {
            let write = |p: &Path, text: String| {
                std::fs::write(p, text).map_err(|error| NetworkError::Io { path: p.to_path_buf(), error })
            };
            write(&path, owner.display().to_string())?;
            write(&last_file, ip.to_string())?;
            return Ok((ip, path));
        }
    }
    Err(NetworkError::Exhausted(*subnet))
}

/// Removes the claim file `claim` if `owner` still holds it.
fn release(claim: &Path, owner: &Path) -> Result<(), NetworkError> {
    let Some(dir) = claim.parent() else { return Ok(()) };
    let _lock = Locked::take(dir)?;
    if std::fs::read_to_string(claim).is_ok_and(|holder| Path::new(holder.trim()) == owner) {
        match std::fs::remove_file(claim) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(NetworkError::Io { path: claim.to_path_buf(), error: e });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` is a bound namespace.
pub(crate) fn is_namespace(path: &Path) -> bool {
    /// `NSFS_MAGIC`: the file system of a bound namespace.
    const NSFS: i64 = 0x6e73_6673;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS)
}

#[cfg(test)]
mod tests;
