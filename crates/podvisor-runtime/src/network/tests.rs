use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{NetworkError, Subnet, claim, release};

fn subnet(s: &str) -> Subnet {
    s.parse().unwrap()
}

#[test]
fn a_subnet_gives_the_gateway_its_first_address_and_pods_the_rest() {
    let s = subnet("10.244.0.0/16");
    assert_eq!(s.to_string(), "10.244.0.0/16");
    assert_eq!(s.gateway(), Ipv4Addr::new(10, 244, 0, 1));
    let small = subnet("192.168.7.0/29");
    let pods: Vec<Ipv4Addr> = small.pod_addresses().collect();
    assert_eq!(pods.first(), Some(&Ipv4Addr::new(192, 168, 7, 2)));
    assert_eq!(pods.last(), Some(&Ipv4Addr::new(192, 168, 7, 6)), "the broadcast address .7 is not handed out");
    assert_eq!(pods.len(), 5);
}

#[test]
fn a_malformed_subnet_says_what_is_wrong() {
    let why = |s: &str| match s.parse::<Subnet>() {
        Err(NetworkError::Subnet { why, .. }) => why,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(why("10.244.0.0"), "no prefix length");
    assert_eq!(why("10.244.0/16"), "not an IPv4 address");
    assert_eq!(why("10.244.0.0/x"), "the prefix length is not a number");
    assert_eq!(why("10.0.0.0/31"), "the prefix length must be between 8 and 30");
    assert_eq!(why("10.244.3.0/16"), "host bits are set (the subnet is 10.244.0.0/16)");
    let e = "10.244.0.0".parse::<Subnet>().unwrap_err().to_string();
    assert!(e.contains("expected an IPv4 subnet such as 10.244.0.0/16, or none"), "{e}");
}

/// A fresh claims directory for one test.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("podvisor-claims-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn owner(n: u32) -> PathBuf {
    PathBuf::from(format!("/run/pods/{n}/ns/net"))
}

#[test]
fn claims_are_unique_move_on_after_the_last_and_free_up_when_released_or_their_namespace_is_gone() {
    let dir = Dir::new("unique");
    let s = subnet("10.9.0.0/29"); // pods: .2 to .6
    let alive = |_: &Path| true;
    let mut got = Vec::new();
    for n in 0..5 {
        got.push(claim(dir.path(), &s, &owner(n), &alive).unwrap());
    }
    let ips: HashSet<Ipv4Addr> = got.iter().map(|g| g.0).collect();
    assert_eq!(ips.len(), 5, "{got:?}");
    assert_eq!(got[0].0, Ipv4Addr::new(10, 9, 0, 2));
    assert!(matches!(claim(dir.path(), &s, &owner(9), &alive), Err(NetworkError::Exhausted(_))));

    // Another namespace's claim is not released by a stranger.
    release(&got[1].1, &owner(7)).unwrap();
    assert!(matches!(claim(dir.path(), &s, &owner(9), &alive), Err(NetworkError::Exhausted(_))));
    release(&got[1].1, &owner(1)).unwrap();
    let again = claim(dir.path(), &s, &owner(9), &alive).unwrap();
    assert_eq!(again.0, Ipv4Addr::new(10, 9, 0, 3));

    // A claim whose namespace is gone (a crash, a reboot) is free.
    let gone = owner(3);
    let only_gone_is_dead = |p: &Path| p != gone;
    let reclaimed = claim(dir.path(), &s, &owner(10), &only_gone_is_dead).unwrap();
    assert_eq!(reclaimed.0, got[3].0);
    assert_eq!(std::fs::read_to_string(&reclaimed.1).unwrap(), owner(10).display().to_string());
}

#[test]
fn after_a_release_the_next_claim_takes_a_fresh_address_not_the_released_one() {
    let dir = Dir::new("fresh");
    let s = subnet("10.9.0.0/24");
    let alive = |_: &Path| true;
    let a = claim(dir.path(), &s, &owner(1), &alive).unwrap();
    release(&a.1, &owner(1)).unwrap();
    let b = claim(dir.path(), &s, &owner(2), &alive).unwrap();
    assert_ne!(a.0, b.0, "a pod that went away keeps its address out of reach for a while");
}
