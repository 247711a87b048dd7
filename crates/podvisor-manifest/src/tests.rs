use super::*;

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/seed-manifests");

fn seed(name: &str) -> Result<Vec<Manifest>, LoadError> {
    load_file(&Path::new(SEEDS).join(name))
}

fn problems(err: LoadError) -> Vec<Problem> {
    match err {
        LoadError::Invalid { problems, .. } => problems,
        other => panic!("expected problems, got {other}"),
    }
}

#[test]
fn every_well_formed_seed_decodes() {
    for name in [
        "seed000-1.yaml",
        "seed001-1.yaml",
        "seed002-1.yaml",
        "seed004-1.yaml",
        "seed004-2.yaml",
        "seed004-3.yaml",
        "seed004-4.yaml",
        "seed004-5-legacy.yaml",
    ] {
        let docs = seed(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(docs.len(), 1, "{name}");
    }
    let job = seed("seed002-1.yaml").unwrap().remove(0);
    let Object::Job(job) = job.object else { panic!("not a job") };
    let spec = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.init_containers.unwrap()[0].restart_policy.as_deref(), Some("Always"));
}

#[test]
fn broken_seeds_are_reported_at_the_offending_line() {
    for (name, line) in [("seed003-1.yaml", 33), ("seed003-2.yaml", 24)] {
        let p = problems(seed(name).unwrap_err());
        assert_eq!(p.len(), 1, "{name}: {p:?}");
        assert_eq!(p[0].pos.line, line, "{name}: {p:?}");
        assert!(p[0].message.starts_with("error converting YAML to JSON"), "{}", p[0].message);
        let rendered = seed(name).unwrap_err().to_string();
        assert!(rendered.contains(&format!("{name}:{line}:")), "{rendered}");
    }
}

#[test]
fn unknown_fields_are_all_reported_with_their_place() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n    bogus: 1\n  nodeSelectr: {}\n";
    let p = problems(load_str("p.yaml", text).unwrap_err());
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0],
        Problem {
            pos: Pos { line: 9, column: 5 },
            message: "strict decoding error: unknown field \"spec.containers[0].bogus\"".into(),
            unknown_field: Some("spec.containers[0].bogus".into()),
        }
    );
    assert_eq!(p[1].pos, Pos { line: 10, column: 3 });
    assert!(p[1].message.contains("\"spec.nodeSelectr\""));
}

#[test]
fn lenient_decoding_drops_unknown_fields_as_warnings_but_not_other_problems() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n    bogus: 1\n  nodeSelectr: {}\n";
    let (objects, warnings) = crate::load_str_lenient("p.yaml", text).unwrap();
    assert_eq!(warnings, ["unknown field \"spec.containers[0].bogus\"", "unknown field \"spec.nodeSelectr\""]);
    let json = objects[0].object.to_json().unwrap();
    assert_eq!(json["spec"], serde_json::json!({"containers": [{"name": "a", "image": "busybox"}]}));
    let wrong_type = text.replace("bogus: 1", "ports: [{containerPort: http}]");
    let p = problems(crate::load_str_lenient("p.yaml", &wrong_type).unwrap_err());
    assert_eq!(p.len(), 1, "only the wrong type is an error: {p:?}");
}

#[test]
fn wrong_types_name_the_field_and_its_place() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: http\n";
    let p = problems(load_str("p.yaml", text).unwrap_err());
    assert_eq!(p[0].pos, Pos { line: 10, column: 22 });
    assert!(
        p[0].message.starts_with("spec.containers[0].ports[0].containerPort: invalid type: string \"http\""),
        "{}",
        p[0].message
    );
    // YAML 1.1: an unquoted `yes` is a boolean, which a string field refuses, as in Kubernetes.
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  flag: yes\n";
    let p = problems(load_str("c.yaml", text).unwrap_err());
    assert_eq!(p[0].pos.line, 6);
    assert!(p[0].message.contains("data.flag: invalid type: boolean `true`"), "{}", p[0].message);
}

#[test]
fn lists_and_multiple_documents_and_kinds() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n  stringData: {k: v}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    let docs = load_str("l.yaml", text).unwrap();
    let kinds: Vec<_> = docs.iter().map(|m| (m.object.kind(), m.object.name().to_string())).collect();
    assert_eq!(kinds, [("ConfigMap", "a".into()), ("Secret", "b".into()), ("Deployment", "d".into())]);
}

#[test]
fn unknown_kinds_and_missing_kind_are_errors() {
    let p = problems(
        load_str("x.yaml", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: s}\n").unwrap_err(),
    );
    assert_eq!(p[0].pos, Pos { line: 2, column: 7 });
    assert!(p[0].message.starts_with("no matches for kind \"PodDisruptionBudget\" in version \"policy/v1\""));
    let p = problems(load_str("x.yaml", "apiVersion: batch/v1\nmetadata: {name: s}\n").unwrap_err());
    assert_eq!(p[0].message, "Object 'Kind' is missing");
}

#[test]
fn field_paths_locate_validation_errors() {
    let m = seed("seed002-1.yaml").unwrap().remove(0);
    assert_eq!(m.locate("spec.template.spec.initContainers[0].restartPolicy"), Pos { line: 13, column: 9 });
    assert_eq!(
        parse_field_path("a.b[2].c"),
        vec![PathSeg::Key("a".into()), PathSeg::Key("b".into()), PathSeg::Index(2), PathSeg::Key("c".into())]
    );
}

/// Issue: 100,000 nested `- ` overflowed the stack (SIGABRT). Nesting is bounded, with a clear
/// error at its place.
#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {}", "[".repeat(100_000));
    let err = crate::load_str("deep.yaml", &text).unwrap_err().to_string();
    assert!(err.contains("recursion limit exceeded") || err.contains("nests deeper than 128 levels"), "{err}");
    let block: String = (0..100_000).map(|i| format!("{}- \n", "  ".repeat(i.min(5)))).collect();
    assert!(crate::load_str("deep.yaml", &format!("x:\n{block}")).is_err());
    let nested: String = (0..100_000).map(|_| "- ").collect::<String>() + "x\n";
    let err = crate::load_str("deep.yaml", &nested).unwrap_err().to_string();
    assert!(err.contains("nests deeper than 128 levels"), "{err}");
}

/// Issue: a 1 KB "billion laughs" file reached 1.9 GB. What aliases expand to is bounded.
#[test]
fn aliases_that_expand_past_the_bound_are_refused() {
    let mut text = String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let err = crate::load_str("laughs.yaml", &text).unwrap_err().to_string();
    assert!(err.contains("aliases expand the document past"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The merge key `<<` is YAML 1.1, which kubectl reads: keys set beside it win.
#[test]
fn merge_keys_merge_as_kubectl_reads_them() {
    let text =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  <<: {a: from-merge, b: from-merge}\n  b: own\n";
    let docs = crate::load_str("merge.yaml", text).unwrap();
    let json = docs[0].object.to_json().unwrap();
    assert_eq!(json["data"], serde_json::json!({"a": "from-merge", "b": "own"}));
}

/// A file past the bound is refused before it is held whole.
#[test]
fn input_past_the_bound_is_refused() {
    let big = std::io::Read::take(std::io::repeat(b'#'), crate::MAX_INPUT + 10);
    let err = crate::read_bounded("big.yaml", big).unwrap_err().to_string();
    assert!(err.contains("big.yaml: cannot read: larger than 64 MiB"), "{err}");
    assert_eq!(crate::read_bounded("small.yaml", &b"kind: Pod\n"[..]).unwrap(), "kind: Pod\n");
}
