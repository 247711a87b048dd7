//! The machine's links, addresses and routes, changed through netlink (rtnetlink) from this
//! process: a sandbox costs no process.
//!
//! A netlink socket works in the network namespace it was opened in. The host's is opened on
//! the caller's thread; a pod's on the thread that made the namespace (see
//! [`crate::namespaces`]) or entered it with `setns(2)`, and is then driven by a tokio runtime
//! like any other socket.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::StreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;

/// A netlink connection in one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

/// What a netlink request said when it failed.
pub type Error = rtnetlink::Error;

impl Netlink {
    /// A connection in the calling thread's network namespace, driven by the tokio runtime the
    /// thread is in (or has entered).
    pub fn connect() -> std::io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The index of the link named `name`, if there is one.
    pub async fn index(&self, name: &str) -> Option<u32> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.next().await {
            Some(Ok(link)) => Some(link.header.index),
            _ => None,
        }
    }

    /// The name of every link, by index.
    pub async fn names(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(Ok(link)) = links.next().await {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            out.push((link.header.index, name.unwrap_or_default()));
        }
        out
    }

    /// Sets the link up.
    pub async fn up(&self, index: u32) -> Result<(), Error> {
        self.handle.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await
    }

    /// Creates a bridge named `name`.
    pub async fn add_bridge(&self, name: &str) -> Result<(), Error> {
        self.handle.link().add(LinkBridge::new(name).build()).execute().await
    }

    /// Creates a veth pair: `name` in this namespace, on the bridge `controller`, and `peer`
    /// made directly in the network namespace of `netns` (an open namespace file). Made there,
    /// not moved there: moving a link between namespaces waits for the kernel's RCU grace
    /// periods, tens of milliseconds. The kernel puts the link on the bridge as it creates it;
    /// neither end can be set up in that request (a veth opened before its peer is linked is
    /// refused), so both are down.
    pub async fn add_veth_into(
        &self,
        name: &str,
        peer: &str,
        netns: &std::fs::File,
        controller: u32,
    ) -> Result<(), Error> {
        use rtnetlink::packet_route::link::{InfoData, InfoVeth};
        use std::os::fd::AsRawFd;
        let fd = netns.as_fd().as_raw_fd();
        let peer = LinkUnspec::new_with_name(peer).setns_by_fd(fd).build();
        let pair =
            LinkVeth::new(name, "").set_info_data(InfoData::Veth(InfoVeth::Peer(peer))).controller(controller).build();
        self.handle.link().add(pair).execute().await
    }

    /// Renames the link with index `index` to `name`, puts it on the bridge `controller` and
    /// sets it up, in one request (the kernel renames it while it is still down).
    pub async fn rename_up(&self, index: u32, name: &str, controller: u32) -> Result<(), Error> {
        let link = LinkUnspec::new_with_index(index).name(name.to_string()).controller(controller).up().build();
        self.handle.link().set(link).execute().await
    }

    /// Sets the link named `name` up (the kernel finds it by its name: no lookup first).
    pub async fn up_by_name(&self, name: &str) -> Result<(), Error> {
        self.handle.link().set(LinkUnspec::new_with_name(name).up().build()).execute().await
    }

    /// Gives the link an address (replacing it if it has it).
    pub async fn add_address(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        self.handle.address().add(index, IpAddr::V4(ip), prefix).replace().execute().await
    }

    /// Removes the address `ip` from the link; an address it does not have is no error.
    pub async fn del_address(&self, index: u32, ip: Ipv4Addr) -> Result<(), Error> {
        let mut found =
            self.handle.address().get().set_link_index_filter(index).set_address_filter(IpAddr::V4(ip)).execute();
        let mut messages = Vec::new();
        while let Some(Ok(m)) = found.next().await {
            messages.push(m);
        }
        for m in messages {
            self.handle.address().del(m).execute().await?;
        }
        Ok(())
    }

    /// Adds the default route through `gateway`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), Error> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        self.handle.route().add(route).execute().await
    }

    /// Deletes the link (a veth takes its peer with it).
    pub async fn delete(&self, index: u32) -> Result<(), Error> {
        self.handle.link().del(index).execute().await
    }

    /// The IPv4 addresses of the link: address and prefix length.
    pub async fn addresses(&self, index: u32) -> Vec<(Ipv4Addr, u8)> {
        let mut out = Vec::new();
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(Ok(a)) = addrs.next().await {
            let ip = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = ip {
                out.push((ip, a.header.prefix_len));
            }
        }
        out
    }

    /// The IPv4 routes of the main table that lead somewhere in particular: destination,
    /// prefix length and the index of the link they leave by (a default route is left out).
    pub async fn routes(&self) -> Vec<(Ipv4Addr, u8, Option<u32>)> {
        let mut out = Vec::new();
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(Ok(r)) = routes.next().await {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if let Some(dst) = dst.filter(|_| table == MAIN_TABLE && r.header.destination_prefix_length > 0) {
                out.push((dst, r.header.destination_prefix_length, oif));
            }
        }
        out
    }
}

/// Runs `f` on a runtime of its own, from a thread in the network namespace bound at `netns`:
/// for the code that is not async (removing a sandbox).
pub fn blocking_in<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce(Netlink) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> Result<T, String> {
    let file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    let thread = std::thread::Builder::new().name("podvisor-netns".into()).spawn(move || {
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| format!("setns: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let n = Netlink::connect().map_err(|e| format!("netlink: {e}"))?;
            Ok(f(n).await)
        })
    });
    thread
        .map_err(|e| format!("a thread for the namespace: {e}"))?
        .join()
        .map_err(|_| "the namespace's thread panicked".to_string())?
}
