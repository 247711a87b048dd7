//! Every rule's page in `docs/lint.md` has a bad and a good example; the bad one gives the
//! rule's finding, the good one nothing at all.

use podvisor_lint::{RULES, lint_text};

const DOC: &str = include_str!("../../../docs/lint.md");

/// The first YAML block after `label` in `section`.
fn example<'a>(section: &'a str, label: &str) -> &'a str {
    let after = section.split_once(label).unwrap_or_else(|| panic!("no {label:?} in\n{section}")).1;
    let block = after.split_once("```yaml\n").expect("a yaml block").1;
    block.split_once("```").expect("a closed block").0
}

#[test]
fn every_rule_has_a_page_whose_bad_example_it_finds_and_whose_good_example_is_clean() {
    for rule in RULES {
        let heading = format!("\n## {}\n", rule.name);
        let start = DOC.find(&heading).unwrap_or_else(|| panic!("docs/lint.md has no section for {}", rule.name));
        let rest = &DOC[start + heading.len()..];
        let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        assert!(section.contains(&format!("`{}`", rule.id)), "{}'s page names its id", rule.name);
        let bad = lint_text("bad.yaml", example(section, "Bad:"));
        assert!(bad.iter().any(|f| f.rule.id == rule.id), "{}: the bad example is not found: {bad:#?}", rule.name);
        let good = lint_text("good.yaml", example(section, "Good:"));
        assert!(good.is_empty(), "{}: the good example is not clean: {good:#?}", rule.name);
    }
}
