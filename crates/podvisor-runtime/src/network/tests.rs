use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{NetworkError, Subnet, being_made, claim, is_namespace, release};

fn subnet(s: &str) -> Subnet {
    s.parse().unwrap()
}

#[test]
fn a_subnet_gives_the_gateway_its_first_address_and_pods_the_rest() {
    let s = subnet("10.244.0.0/16");
    assert_eq!(s.to_string(), "10.244.0.0/16");
    assert_eq!(s.gateway(), Ipv4Addr::new(10, 244, 0, 1));
    let (first, count) = subnet("192.168.7.0/29").pod_range();
    assert_eq!(Ipv4Addr::from(first), Ipv4Addr::new(192, 168, 7, 2));
    assert_eq!(count, 5, "up to .6: the broadcast address .7 is not handed out");
    assert_eq!(subnet("10.0.0.0/8").pod_range().1, (1 << 24) - 3);
    assert!(s.overlaps(&subnet("10.244.3.0/24")) && subnet("10.244.3.0/24").overlaps(&s));
    assert!(!s.overlaps(&subnet("10.245.0.0/16")));
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
    assert_eq!(why("127.0.0.0/8"), "not a unicast subnet");
    assert_eq!(why("224.0.0.0/8"), "not a unicast subnet");
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

#[test]
fn claims_made_at_the_same_time_get_different_addresses() {
    let dir = Dir::new("concurrent");
    let s = subnet("10.9.0.0/24");
    let got: Vec<Ipv4Addr> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|n| {
                let (dir, s) = (dir.path(), &s);
                scope.spawn(move || claim(dir, s, &owner(n), &|_: &Path| true).unwrap().0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 16, "{got:?}");
}

#[test]
fn a_claim_written_with_a_newline_still_names_its_holder() {
    let dir = Dir::new("newline");
    let s = subnet("10.9.0.0/30"); // one pod address: .2
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("10.9.0.2"), format!("{}\n", owner(1).display())).unwrap();
    let alive = |p: &Path| p == owner(1);
    assert!(matches!(claim(dir.path(), &s, &owner(2), &alive), Err(NetworkError::Exhausted(_))));
    release(&dir.path().join("10.9.0.2"), &owner(1)).unwrap();
    assert!(!dir.path().join("10.9.0.2").exists());
}

/// The sandbox claims its address while its namespaces are made: an owner that is still a
/// plain file, made moments ago, holds its claim; one that never became a namespace within
/// a minute (its process ended first) does not, nor does an owner that is gone.
#[test]
fn a_claim_whose_namespace_is_being_made_is_held_and_one_left_unmade_is_free() {
    let dir = Dir::new("being-made");
    std::fs::create_dir_all(dir.path()).unwrap();
    let fresh = dir.path().join("fresh-ns");
    std::fs::write(&fresh, b"").unwrap();
    assert!(being_made(&fresh), "a plain file made just now");
    let stale = dir.path().join("stale-ns");
    let f = std::fs::File::create(&stale).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(61)).unwrap();
    assert!(!being_made(&stale), "made more than a minute ago and still no namespace");
    assert!(!being_made(&dir.path().join("missing")));
    assert!(!being_made(dir.path()), "a directory is no namespace file");

    let s = subnet("10.9.0.0/30"); // one pod address: .2
    let alive = |p: &Path| is_namespace(p) || being_made(p);
    let first = claim(dir.path(), &s, &fresh, &alive).unwrap();
    assert!(matches!(claim(dir.path(), &s, &owner(1), &alive), Err(NetworkError::Exhausted(_))));
    release(&first.1, &fresh).unwrap();
    claim(dir.path(), &s, &stale, &alive).unwrap();
    let taken = claim(dir.path(), &s, &owner(2), &alive).unwrap();
    assert_eq!(taken.0, first.0, "the unmade owner's address is free again");
}
