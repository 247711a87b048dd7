//! Pods' namespaces made ahead by the maker's thread (as root): each pod gets namespaces of its
//! own, new ones every time, with its hostname and a loopback that is up.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use podvisor_runtime::namespaces::{Kind, NamespaceMaker};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Runs `f` on a thread that entered the namespace bound at `file`.
fn inside<T: Send + 'static>(file: &Path, kind: LinkNameSpaceType, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(file).unwrap();
    std::thread::spawn(move || {
        move_into_link_name_space(ns.as_fd(), Some(kind)).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn files(dir: &Path) -> Vec<(Kind, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    [Kind::Net, Kind::Uts, Kind::Ipc]
        .into_iter()
        .map(|k| {
            let f = dir.join(k.name());
            std::fs::write(&f, b"").unwrap();
            (k, f)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pod_gets_new_namespaces_with_its_hostname_and_loopback_up() {
    let dir = std::env::temp_dir().join(format!("podvisor-namespaces-{}", std::process::id()));
    let maker = NamespaceMaker::start(None).unwrap();
    let (a, b) = (files(&dir.join("a")), files(&dir.join("b")));
    maker.make(a.clone(), "alpha".into()).await.unwrap();
    maker.make(b.clone(), "beta".into()).await.unwrap();

    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    for kind in ["net", "uts", "ipc"] {
        let own = ino(Path::new(&format!("/proc/self/ns/{kind}")));
        let (in_a, in_b) = (ino(&dir.join("a").join(kind)), ino(&dir.join("b").join(kind)));
        assert!(in_a != own && in_b != own && in_a != in_b, "{kind}: {own} {in_a} {in_b}");
    }
    let hostname = || rustix::system::uname().nodename().to_string_lossy().into_owned();
    assert_eq!(inside(&dir.join("a/uts"), LinkNameSpaceType::HostNameAndNISDomainName, hostname), "alpha");
    assert_eq!(inside(&dir.join("b/uts"), LinkNameSpaceType::HostNameAndNISDomainName, hostname), "beta");
    assert_ne!(hostname(), "alpha", "the host keeps its own name");
    // A connection over loopback works only where loopback is up.
    let talk = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std::net::TcpStream::connect(listener.local_addr().unwrap()).is_ok()
    };
    assert!(inside(&dir.join("a/net"), LinkNameSpaceType::Network, talk));
    assert!(inside(&dir.join("b/net"), LinkNameSpaceType::Network, talk));

    let wrong = vec![(Kind::Ipc, dir.join("a/ipc"))];
    let Err(refused) = maker.make(wrong, "x".into()).await else { panic!("an IPC namespace alone was made") };
    assert!(refused.contains("net, uts and ipc"), "{refused}");

    for (_, f) in a.iter().chain(&b) {
        rustix::mount::unmount(f, rustix::mount::UnmountFlags::DETACH).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On the pod network, each set comes with its veth pair made: `eth0` in the pod's namespace,
/// its peer already on the bridge (down, under a temporary name until the sandbox names it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_pod_network_each_set_comes_with_its_pair_on_the_bridge() {
    use podvisor_runtime::network::{BRIDGE, DEFAULT_SUBNET, PodNetwork};
    let dir = std::env::temp_dir().join(format!("podvisor-namespaces-veth-{}", std::process::id()));
    PodNetwork::new(DEFAULT_SUBNET.parse().unwrap()).ensure_bridge().await.unwrap();
    let maker = NamespaceMaker::start(Some(BRIDGE)).unwrap();
    let made = maker.make(files(&dir), "gamma".into()).await.unwrap();
    let veth = made.veth.expect("the pair is made with the namespaces");

    let by_index = |index: u32| {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .find(|e| std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|i| i.trim() == index.to_string()))
    };
    let host_end = by_index(veth.host_index).expect("the host's end is a link of the host");
    let master = std::fs::read_link(host_end.path().join("master")).unwrap();
    assert_eq!(master.file_name().unwrap(), BRIDGE, "the host's end is on the bridge");
    assert!(host_end.file_name().to_string_lossy().starts_with("pvs"), "{:?}", host_end.file_name());
    let links = inside(&dir.join("net"), LinkNameSpaceType::Network, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
    });
    assert!(links.lines().any(|l| l.trim_start().starts_with("eth0:")), "{links}");
    assert!(veth.eth0_index > 1, "eth0 is not the loopback");

    for (_, f) in files_in(&dir) {
        rustix::mount::unmount(&f, rustix::mount::UnmountFlags::DETACH).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn files_in(dir: &Path) -> Vec<(Kind, PathBuf)> {
    [Kind::Net, Kind::Uts, Kind::Ipc].into_iter().map(|k| (k, dir.join(k.name()))).collect()
}
