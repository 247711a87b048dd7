use serde_json::json;

use super::*;

/// A message built field by field, as the Go encoder writes it.
#[derive(Default, Clone)]
struct Msg(Vec<u8>);

fn varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

impl Msg {
    fn int(mut self, tag: u32, v: i64) -> Msg {
        varint(&mut self.0, u64::from(tag) << 3);
        varint(&mut self.0, v as u64);
        self
    }
    fn bytes(mut self, tag: u32, b: &[u8]) -> Msg {
        varint(&mut self.0, u64::from(tag) << 3 | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, tag: u32, s: &str) -> Msg {
        self.bytes(tag, s.as_bytes())
    }
    fn msg(self, tag: u32, m: Msg) -> Msg {
        self.bytes(tag, &m.0)
    }
    fn entry(self, tag: u32, key: &str, value: Msg) -> Msg {
        self.msg(tag, Msg::default().str(1, key).bytes(2, &value.0))
    }
}

/// The envelope around `raw`.
fn envelope(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let unknown =
        Msg::default().msg(1, Msg::default().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
    [MAGIC, &unknown.0].concat()
}

/// The metadata the Go encoder writes for an object named `name`: every value field, even empty.
fn meta(name: &str) -> Msg {
    Msg::default().str(1, name).str(2, "").str(3, "").str(4, "").str(5, "").str(6, "").int(7, 0).msg(8, Msg::default())
}

#[test]
fn kubectl_create_configmap_body_decodes_to_the_object_it_names() {
    // `kubectl create configmap foo --from-literal=a=b`, as sent by kubectl 1.32.
    let body = [
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f, 0x6e, 0x66, 0x69, 0x67,
        0x4d, 0x61, 0x70, 0x12, 0x1d, 0x0a, 0x13, 0x0a, 0x03, 0x66, 0x6f, 0x6f, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00,
        0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, 0x00,
        0x22, 0x00,
    ];
    assert_eq!(
        decode(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "foo"}, "data": {"a": "b"}})
    );
}

#[test]
fn secret_bytes_are_base64_and_a_time_is_rfc3339() {
    let raw = Msg::default()
        .msg(1, meta("s").msg(8, Msg::default().int(1, 1_795_010_815)))
        .entry(2, "one", Msg(b"a".to_vec()))
        .entry(2, "two", Msg(b"ab".to_vec()))
        .entry(2, "three", Msg(b"abc".to_vec()))
        .msg(2, Msg::default().str(1, "empty"))
        .str(3, "Opaque");
    let decoded = decode(&envelope("v1", "Secret", raw)).unwrap();
    assert_eq!(decoded["metadata"], json!({"name": "s", "creationTimestamp": "2026-11-18T14:06:55Z"}));
    assert_eq!(decoded["data"]["one"], json!("YQ=="));
    assert_eq!(decoded["data"]["two"], json!("YWI="));
    assert_eq!(decoded["data"]["three"], json!("YWJj"));
    assert_eq!(decoded["data"]["empty"], json!(""));
    assert_eq!(decoded["type"], json!("Opaque"));
}

#[test]
fn base64_pads_as_the_standard_alphabet_does() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

fn container(name: &str) -> Msg {
    // name, image, and the value-typed resources and terminationMessagePath the Go encoder always writes.
    Msg::default().str(1, name).str(2, "busybox:1.36").msg(8, Msg::default()).str(13, "")
}

#[test]
fn pointer_zeros_are_kept_and_value_zeros_with_omitempty_are_dropped() {
    let pod_spec = Msg::default()
        .msg(2, container("app"))
        .str(3, "Never")
        .int(4, 0) // terminationGracePeriodSeconds: *int64 → kept
        .str(7, "") // dnsPolicy: value with omitempty → dropped
        .msg(1, Msg::default().str(1, "scratch").msg(2, Msg::default().msg(2, Msg::default())));
    let deployment = Msg::default().msg(1, meta("web")).msg(
        2,
        Msg::default()
            .int(1, 0) // replicas: *int32 → kept
            .msg(2, Msg::default().entry(1, "app", Msg(b"web".to_vec())))
            .msg(3, Msg::default().msg(1, meta("")).msg(2, pod_spec))
            .msg(4, Msg::default())
            .int(5, 0), // minReadySeconds: value with omitempty → dropped
    );
    let d = decode(&envelope("apps/v1", "Deployment", deployment)).unwrap();
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], json!(0));
    assert!(spec.get("minReadySeconds").is_none(), "{spec}");
    assert_eq!(spec["strategy"], json!({}), "a value struct prints even when empty");
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], json!(0));
    assert!(pod.get("dnsPolicy").is_none(), "{pod}");
    assert_eq!(pod["restartPolicy"], json!("Never"));
    // VolumeSource is inline: its emptyDir (a pointer, empty) shows beside the name.
    assert_eq!(pod["volumes"], json!([{"name": "scratch", "emptyDir": {}}]));
    // name has no omitempty, so an empty one would print; terminationMessagePath has it.
    assert_eq!(pod["containers"], json!([{"name": "app", "image": "busybox:1.36", "resources": {}}]));
    assert_eq!(spec["template"]["metadata"], json!({}));
}

#[test]
fn int_or_string_quantities_and_negative_numbers() {
    let probe = Msg::default()
        .msg(
            1,
            Msg::default().msg(2, Msg::default().str(1, "/healthz").msg(2, Msg::default().int(1, 1).str(3, "http"))),
        )
        .int(2, 0);
    let limits = Msg::default().entry(1, "memory", Msg::default().str(1, "64Mi"));
    // resources appears twice (empty, then with limits): the two merge.
    let app = container("app")
        .msg(8, limits)
        .msg(10, probe)
        .msg(6, Msg::default().str(1, "http").int(3, 8080).str(4, "TCP"))
        .msg(15, Msg::default().int(4, -1)); // securityContext.runAsUser
    let pod = Msg::default().msg(1, meta("p")).msg(2, Msg::default().msg(2, app));
    let p = decode(&envelope("v1", "Pod", pod)).unwrap();
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["resources"], json!({"limits": {"memory": "64Mi"}}));
    assert_eq!(c["livenessProbe"], json!({"httpGet": {"path": "/healthz", "port": "http"}}));
    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["securityContext"], json!({"runAsUser": -1}));
    let int_port = Msg::default().msg(1, Msg::default().msg(3, Msg::default().msg(1, Msg::default().int(2, 5432))));
    let pod = Msg::default().msg(1, meta("q")).msg(2, Msg::default().msg(2, container("db").msg(11, int_port)));
    let q = decode(&envelope("v1", "Pod", pod)).unwrap();
    assert_eq!(q["spec"]["containers"][0]["readinessProbe"], json!({"tcpSocket": {"port": 5432}}));
}

#[test]
fn packed_and_unpacked_lists_of_numbers_both_read() {
    // podFailurePolicy.rules[].onExitCodes.values
    let unpacked = Msg::default().str(2, "In").int(3, 1).int(3, 2);
    let packed = Msg::default().str(2, "In").bytes(3, &[3, 4]);
    let rules = Msg::default()
        .msg(1, Msg::default().str(1, "FailJob").msg(2, unpacked))
        .msg(1, Msg::default().str(1, "Ignore").msg(2, packed));
    let template = Msg::default().msg(1, meta("")).msg(2, Msg::default().msg(2, container("c")));
    let job = Msg::default().msg(1, meta("j")).msg(2, Msg::default().msg(6, template).msg(11, rules));
    let j = decode(&envelope("batch/v1", "Job", job)).unwrap();
    let rules = &j["spec"]["podFailurePolicy"]["rules"];
    assert_eq!(rules[0]["onExitCodes"]["values"], json!([1, 2]));
    assert_eq!(rules[1]["onExitCodes"]["values"], json!([3, 4]));
    assert_eq!(rules[1]["action"], json!("Ignore"));
}

#[test]
fn unknown_fields_are_skipped_as_the_api_server_skips_them() {
    let raw = Msg::default().msg(1, meta("n")).int(99, 7).bytes(98, b"junk").msg(97, Msg::default());
    assert_eq!(
        decode(&envelope("v1", "Namespace", raw)).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    );
}

#[test]
fn bad_bodies_get_precise_errors() {
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::NoEnvelope));
    assert_eq!(
        decode(&envelope("v1", "ReplicationController", Msg::default())),
        Err(ProtobufError::UnknownKind { api_version: "v1".into(), kind: "ReplicationController".into() })
    );
    let mut truncated = envelope("v1", "ConfigMap", Msg::default().msg(1, meta("x")));
    truncated.truncate(truncated.len() - 3);
    let err = decode(&truncated).unwrap_err();
    assert!(matches!(err, ProtobufError::Malformed { .. }), "{err}");
    let map_as_number = envelope("v1", "ConfigMap", Msg::default().int(2, 5));
    assert_eq!(
        decode(&map_as_number).unwrap_err().to_string(),
        "malformed protobuf in core.v1.ConfigMap: field data (2): wire type 0, expected 2"
    );
    let inline_as_number =
        envelope("v1", "Pod", Msg::default().msg(2, Msg::default().msg(1, Msg::default().int(2, 1))));
    assert!(
        decode(&inline_as_number)
            .unwrap_err()
            .to_string()
            .contains("field core.v1.VolumeSource (2): wire type 0, expected 2")
    );
    let negative_nanos = envelope("v1", "Event", Msg::default().msg(10, Msg::default().int(1, 1).int(2, -1)));
    assert!(decode(&negative_nanos).unwrap_err().to_string().contains("nanos -1 out of range"));
    let wrong_wire = envelope("v1", "ConfigMap", Msg::default().int(1, 5));
    assert_eq!(
        decode(&wrong_wire).unwrap_err().to_string(),
        "malformed protobuf in core.v1.ConfigMap: field metadata (1): wire type 0, expected 2"
    );
}

#[test]
fn the_table_is_sorted_and_every_message_it_names_is_in_it() {
    let names: Vec<&str> = schema::MESSAGES.iter().map(|(n, _)| *n).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "binary search needs the table sorted");
    let mut named = Vec::new();
    for (_, fields) in schema::MESSAGES {
        for field in *fields {
            match &field.kind {
                Kind::Message(m) => named.push(*m),
                Kind::Map(Kind::Message(m)) => named.push(*m),
                _ => {}
            }
            assert!(field.flags & INLINE == 0 || matches!(field.kind, Kind::Message(_)));
        }
    }
    for m in named {
        assert!(fields(m).is_some(), "{m} is named but not in the table");
    }
    for resource in Resource::ALL.into_iter().filter(|r| !r.is_read_only()) {
        let info = resource.info();
        let group = if info.group.is_empty() { "core" } else { info.group };
        let name = format!("{group}.{}.{}", info.version, info.kind);
        assert!(fields(&name).is_some(), "{name} is served but not in the table");
    }
}
