//! A small DNS server for pods: names of the cluster zone are answered from a [`Zone`] (the
//! cluster's Services and pods, as CoreDNS's kubernetes plugin answers them), every other name
//! is relayed to the host's resolvers. Over UDP and TCP, with hickory-proto for the wire format.
//!
//! Bounds: a UDP message is read into 4 KiB, a TCP one is at most 64 KiB; at most 256 relays
//! and 128 TCP clients at once; a relay waits 2 s per upstream, a TCP client 10 s per message.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

/// How long answers from the cluster zone may be cached (CoreDNS's default).
pub const TTL: u32 = 5;

const UDP_BUFFER: usize = 4096;
const MAX_RELAYS: usize = 256;
const MAX_TCP_CLIENTS: usize = 128;
const RELAY_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What is asked: a name (lower case, without the final dot) and a record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name.
    pub name: String,
    /// The type.
    pub kind: Kind,
}

/// The record types the zone tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An IPv4 address.
    A,
    /// An IPv6 address (none here).
    Aaaa,
    /// A service record.
    Srv,
    /// A reverse name.
    Ptr,
    /// Anything else.
    Other,
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rr {
    /// `name A ip`.
    A(String, Ipv4Addr),
    /// `name CNAME target`.
    Cname(String, String),
    /// `name SRV priority weight port target`.
    Srv {
        /// The owner name.
        name: String,
        /// The port.
        port: u16,
        /// The target host.
        target: String,
    },
    /// `name PTR target`.
    Ptr(String, String),
}

/// What the zone says of a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not a name of the zone: it is relayed to the host's resolvers.
    NotOurs,
    /// A name of the zone that does not exist.
    NxDomain,
    /// The records (none: the name exists, without records of that type).
    Records(Vec<Rr>),
}

/// Names the server answers itself.
pub trait Zone: Send + Sync + 'static {
    /// The zone's apex (`cluster.local`), named in the SOA of negative answers.
    fn apex(&self) -> &str;
    /// The answer to `q`.
    fn answer(&self, q: &Question) -> Answer;
}

/// The nameservers of a `resolv.conf`, as UDP/TCP port 53 addresses, but `except`.
pub fn nameservers(resolv_conf: &str, except: Ipv4Addr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| std::net::IpAddr::from_str(a.trim()).ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(except))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serves DNS on `bind` (UDP and TCP) until `stop` turns true.
pub async fn serve(
    bind: SocketAddr,
    zone: Arc<dyn Zone>,
    upstreams: Vec<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let udp = UdpSocket::bind(bind).await?;
    let tcp = TcpListener::bind(bind).await?;
    serve_on(udp, tcp, zone, upstreams, stop).await;
    Ok(())
}

/// [`serve`] on sockets already bound (so that a caller knows the server can answer before
/// it points anyone at it).
pub async fn serve_on(
    udp: UdpSocket,
    tcp: TcpListener,
    zone: Arc<dyn Zone>,
    upstreams: Vec<SocketAddr>,
    stop: watch::Receiver<bool>,
) {
    let udp = Arc::new(udp);
    let upstreams = Arc::new(upstreams);
    let relays = Arc::new(Semaphore::new(MAX_RELAYS));
    let clients = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut stopped = Box::pin(async move {
        let mut stop = stop;
        _ = stop.wait_for(|s| *s).await;
    });
    loop {
        tokio::select! {
            () = &mut stopped => return,
            r = udp.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let query = buf[..n].to_vec();
                match respond(zone.as_ref(), &query, false) {
                    Some(reply) => _ = udp.send_to(&reply, from).await,
                    None => {
                        let Ok(permit) = relays.clone().try_acquire_owned() else { continue };
                        let (udp, upstreams) = (udp.clone(), upstreams.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Some(reply) = relay_udp(&upstreams, &query).await {
                                _ = udp.send_to(&reply, from).await;
                            } else if let Some(fail) = servfail(&query) {
                                _ = udp.send_to(&fail, from).await;
                            }
                        });
                    }
                }
            }
            r = tcp.accept() => {
                let Ok((stream, _)) = r else {
                    // Out of descriptors: the listener stays readable; wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = clients.clone().try_acquire_owned() else { continue };
                let (zone, upstreams) = (zone.clone(), upstreams.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    tcp_client(stream, zone.as_ref(), &upstreams).await;
                });
            }
        }
    }
}

async fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let len = tokio::time::timeout(TCP_IDLE, s.read_u16()).await.ok()?.ok()?;
    let mut msg = vec![0u8; usize::from(len)];
    tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg)).await.ok()?.ok()?;
    Some(msg)
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    s.write_u16(len).await.ok()?;
    s.write_all(msg).await.ok()
}

async fn tcp_client(mut s: TcpStream, zone: &dyn Zone, upstreams: &[SocketAddr]) {
    while let Some(query) = read_framed(&mut s).await {
        let reply = match respond(zone, &query, true) {
            Some(r) => Some(r),
            None => relay_tcp(upstreams, &query).await.or_else(|| servfail(&query)),
        };
        let Some(reply) = reply else { return };
        if write_framed(&mut s, &reply).await.is_none() {
            return;
        }
    }
}

async fn relay_udp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(sock) = UdpSocket::bind(local).await else { continue };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; UDP_BUFFER];
        if let Ok(Ok((n, from))) = tokio::time::timeout(RELAY_TIMEOUT, sock.recv_from(&mut buf)).await
            && from == *up
            && buf.get(..2) == Some(id)
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

async fn relay_tcp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let attempt = async {
            let mut s = TcpStream::connect(up).await.ok()?;
            write_framed(&mut s, query).await?;
            read_framed(&mut s).await
        };
        if let Ok(Some(reply)) = tokio::time::timeout(RELAY_TIMEOUT, attempt).await {
            return Some(reply);
        }
    }
    None
}

/// A SERVFAIL for a query that could not be relayed.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut m = Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries);
    m.to_vec().ok()
}

fn kind_of(t: RecordType) -> Kind {
    match t {
        RecordType::A => Kind::A,
        RecordType::AAAA => Kind::Aaaa,
        RecordType::SRV => Kind::Srv,
        RecordType::PTR => Kind::Ptr,
        _ => Kind::Other,
    }
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(format!("{s}.")).ok()
}

fn record(rr: &Rr) -> Option<Record> {
    Some(match rr {
        Rr::A(n, ip) => Record::from_rdata(name(n)?, TTL, RData::A(A(*ip))),
        Rr::Cname(n, t) => Record::from_rdata(name(n)?, TTL, RData::CNAME(CNAME(name(t)?))),
        Rr::Ptr(n, t) => Record::from_rdata(name(n)?, TTL, RData::PTR(PTR(name(t)?))),
        Rr::Srv { name: n, port, target } => {
            // CoreDNS weighs each target of a name alike.
            Record::from_rdata(name(n)?, TTL, RData::SRV(SRV::new(0, 100, *port, name(target)?)))
        }
    })
}

fn soa(apex: &str) -> Option<Record> {
    let rdata =
        SOA::new(name(&format!("ns.dns.{apex}"))?, name(&format!("hostmaster.{apex}"))?, 1, 7200, 1800, 86400, TTL);
    Some(Record::from_rdata(name(apex)?, TTL, RData::SOA(rdata)))
}

/// The answer to `query` from the zone, or `None` when it is to be relayed. A message that
/// does not decode as a query gets FORMERR. Over UDP (`tcp` false) an answer larger than the
/// client takes (512 bytes, or its EDNS payload size up to 4096) is truncated, and the client
/// asks again over TCP, where it is whole.
pub fn respond(zone: &dyn Zone, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let q = match Message::from_vec(query) {
        Ok(q) => q,
        Err(_) => {
            // Not a DNS message at all: a FORMERR with the ID, if there is one.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
    };
    if q.metadata.message_type != MessageType::Query || q.metadata.op_code != OpCode::Query || q.queries.len() != 1 {
        let mut m = Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::NotImp);
        m.add_queries(q.queries.clone());
        return m.to_vec().ok();
    }
    let question = &q.queries[0];
    let asked = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let answer = zone.answer(&Question { name: asked, kind: kind_of(question.query_type()) });
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = true;
    m.add_query(question.clone());
    // A query with EDNS gets an OPT record back.
    m.edns = q.edns.clone();
    match answer {
        Answer::NotOurs => return None,
        Answer::NxDomain => {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authorities(soa(zone.apex()));
        }
        Answer::Records(rrs) if rrs.is_empty() => _ = m.add_authorities(soa(zone.apex())),
        Answer::Records(rrs) => _ = m.add_answers(rrs.iter().filter_map(record)),
    }
    let Ok(bytes) = m.to_vec() else {
        // An answer too large to write is still the zone's: it fails, it is never relayed.
        return servfail(query);
    };
    let limit = q.edns.as_ref().map_or(512, |e| usize::from(e.max_payload()).clamp(512, 4096));
    if !tcp && bytes.len() > limit {
        let mut t = m.truncate();
        t.metadata.truncation = true;
        return t.to_vec().ok();
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    struct Fixed;

    impl Zone for Fixed {
        fn apex(&self) -> &str {
            "cluster.local"
        }
        fn answer(&self, q: &Question) -> Answer {
            match (q.name.as_str(), q.kind) {
                ("web.default.svc.cluster.local", Kind::A) => {
                    Answer::Records(vec![Rr::A(q.name.clone(), Ipv4Addr::new(10, 96, 0, 20))])
                }
                ("web.default.svc.cluster.local", _) => Answer::Records(vec![]),
                (n, _) if n.ends_with("cluster.local") => Answer::NxDomain,
                _ => Answer::NotOurs,
            }
        }
    }

    fn respond_udp(zone: &dyn Zone, query: &[u8]) -> Option<Vec<u8>> {
        respond(zone, query, false)
    }

    fn ask(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn the_zone_answers_its_names_and_leaves_others_to_the_relay() {
        let reply =
            Message::from_vec(&respond_udp(&Fixed, &ask("WEB.default.svc.cluster.local.", RecordType::A)).unwrap())
                .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative && reply.metadata.recursion_available);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data, RData::A(A(Ipv4Addr::new(10, 96, 0, 20))));
        let nodata =
            Message::from_vec(&respond_udp(&Fixed, &ask("web.default.svc.cluster.local.", RecordType::AAAA)).unwrap())
                .unwrap();
        assert_eq!(
            (nodata.metadata.response_code, nodata.answers.len(), nodata.authorities.len()),
            (ResponseCode::NoError, 0, 1)
        );
        let nx =
            Message::from_vec(&respond_udp(&Fixed, &ask("nope.default.svc.cluster.local.", RecordType::A)).unwrap())
                .unwrap();
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(respond_udp(&Fixed, &ask("example.com.", RecordType::A)).is_none());
        let garbage = Message::from_vec(&respond_udp(&Fixed, &[0x12, 0x34, 0xff]).unwrap()).unwrap();
        assert_eq!((garbage.metadata.id, garbage.metadata.response_code), (0x1234, ResponseCode::FormErr));
    }

    /// Review: a large answer was truncated over TCP too, so a client never got it whole.
    #[test]
    fn a_large_answer_is_truncated_over_udp_only() {
        struct Many;
        impl Zone for Many {
            fn apex(&self) -> &str {
                "cluster.local"
            }
            fn answer(&self, q: &Question) -> Answer {
                Answer::Records((0..60).map(|i| Rr::A(q.name.clone(), Ipv4Addr::new(10, 244, 0, i))).collect())
            }
        }
        let query = ask("db.default.svc.cluster.local.", RecordType::A);
        let udp = Message::from_vec(&respond(&Many, &query, false).unwrap()).unwrap();
        assert!(udp.metadata.truncation && udp.answers.is_empty());
        let tcp = Message::from_vec(&respond(&Many, &query, true).unwrap()).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 60);
    }

    #[test]
    fn nameservers_come_from_resolv_conf_without_our_own() {
        let conf = "search example.com\nnameserver 10.255.255.53\nnameserver 10.96.0.10\noptions ndots:1\n";
        assert_eq!(
            nameservers(conf, Ipv4Addr::new(10, 96, 0, 10)),
            ["10.255.255.53:53".parse::<SocketAddr>().unwrap()]
        );
    }

    /// Over real sockets: a cluster name over UDP and TCP, and a relayed one answered by an
    /// upstream that is another instance of the server.
    #[tokio::test]
    async fn udp_tcp_and_relay() {
        struct Upstream;
        impl Zone for Upstream {
            fn apex(&self) -> &str {
                "example.com"
            }
            fn answer(&self, q: &Question) -> Answer {
                Answer::Records(vec![Rr::A(q.name.clone(), Ipv4Addr::new(192, 0, 2, 1))])
            }
        }
        let (_tx, rx) = watch::channel(false);
        let free = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (up, ours) = (free(), free());
        tokio::spawn(serve(up, Arc::new(Upstream), vec![], rx.clone()));
        tokio::spawn(serve(ours, Arc::new(Fixed), vec![up], rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        for (name, want) in [
            ("web.default.svc.cluster.local.", Ipv4Addr::new(10, 96, 0, 20)),
            ("example.com.", Ipv4Addr::new(192, 0, 2, 1)),
        ] {
            client.send_to(&ask(name, RecordType::A), ours).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf)).await.unwrap().unwrap();
            let reply = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(reply.answers[0].data, RData::A(A(want)), "{name}");
        }
        let mut s = TcpStream::connect(ours).await.unwrap();
        write_framed(&mut s, &ask("web.default.svc.cluster.local.", RecordType::A)).await.unwrap();
        let reply = Message::from_vec(&read_framed(&mut s).await.unwrap()).unwrap();
        assert_eq!(reply.answers.len(), 1);
    }
}
