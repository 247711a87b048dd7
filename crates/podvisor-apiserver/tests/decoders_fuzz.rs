//! Every decoder fed hostile input for a bounded time: the manifest reader (YAML and JSON,
//! random text and mutated seeds), protobuf bodies, and JSON, merge and strategic merge
//! patches. Each answers with a value or an error; none panics, none runs away.

use podvisor_apiserver::json_patch::json_patch;
use podvisor_apiserver::patch::{merge_patch, strategic_merge};
use proptest::prelude::*;
use serde_json::{Value, json};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/seed-manifests");

fn seeds() -> Vec<String> {
    std::fs::read_dir(SEEDS)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

/// Text with YAML's and JSON's punctuation over-represented.
fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "- ",
                ": ",
                "\n",
                "  ",
                "&a ",
                "*a",
                "<<: ",
                "[",
                "]",
                "{",
                "}",
                ",",
                "\"",
                "'",
                "!!int ",
                "!!str ",
                "---\n",
                "#",
                "|\n",
                ">\n",
                "apiVersion: v1\n",
                "kind: Pod\n",
                "metadata:\n",
                "name: x\n",
                "9223372036854775807",
                "-1",
                "1e309",
                "0x",
                "~",
                "null",
                "yes",
                "\t",
                "\u{0}",
                "é",
            ])
            .prop_map(str::to_string),
            "[a-z0-9]{1,6}",
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

/// A seed with bytes inserted, deleted or replaced.
fn mutated() -> impl Strategy<Value = String> {
    let all = seeds();
    (0..all.len(), proptest::collection::vec((any::<u16>(), 0..3u8, any::<char>()), 1..8)).prop_map(
        move |(i, edits)| {
            let mut chars: Vec<char> = all[i].chars().collect();
            for (at, kind, c) in edits {
                if chars.is_empty() {
                    break;
                }
                let at = usize::from(at) % chars.len();
                match kind {
                    0 => chars.insert(at, c),
                    1 => {
                        chars.remove(at);
                    }
                    _ => chars[at] = c,
                }
            }
            chars.into_iter().collect()
        },
    )
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z/~0-9$]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z$]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a".to_string()), Just("0".to_string()), Just("-".to_string()), "[a-z0-9~]{0,3}"],
        0..4,
    )
    .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect())
}

fn operation() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "bogus"]),
        pointer(),
        pointer(),
        json_value(),
    )
        .prop_map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_manifest_reader_never_panics_on_text(text in yamlish()) {
        let _ = podvisor_manifest::load_str("fuzz.yaml", &text);
        let _ = podvisor_manifest::load_str_lenient("fuzz.yaml", &text);
    }

    #[test]
    fn mutated_seeds_decode_validate_or_are_refused(text in mutated()) {
        if let Ok(docs) = podvisor_manifest::load_str("fuzz.yaml", &text) {
            for mut m in docs {
                podvisor_objects::defaults::apply(&mut m.object);
                let _ = podvisor_objects::validate(&m.object);
                let _ = podvisor_objects::resources::effective(
                    match &m.object { podvisor_manifest::Object::Pod(p) => p.spec.as_ref(), _ => None }.unwrap_or(&Default::default()),
                    true,
                );
            }
        }
    }

    #[test]
    fn protobuf_bodies_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = b"k8s\0".to_vec();
        body.extend(bytes.iter().copied());
        let _ = podvisor_apiserver::protobuf::decode(&bytes);
        let _ = podvisor_apiserver::protobuf::decode(&body);
    }

    #[test]
    fn patches_apply_or_are_refused(doc in json_value(), ops in proptest::collection::vec(operation(), 0..12), other in json_value()) {
        let mut d = doc.clone();
        let _ = json_patch(&mut d, &Value::Array(ops));
        let mut m = doc.clone();
        merge_patch(&mut m, &other);
        let mut s = doc;
        let _ = strategic_merge(&mut s, &other);
    }
}
