//! The Guard check on the infrastructure must be able to fail: the real
//! template passes the HIPAA Security rules after the SAM transform, and a
//! deliberately bad template does not. Needs the tools ./scripts/test installs.

use std::process::Command;

fn guard(template: &str) -> (bool, String) {
    let out = Command::new("scripts/check-infra")
        .args(["guard", template])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("scripts/check-infra runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_template_passes_the_hipaa_security_rules() {
    let (passed, output) = guard("infra/template.yaml");
    assert!(passed, "{output}");
    assert!(output.contains("resources after the transform"), "the rules ran on the transformed template: {output}");
}

#[test]
fn a_deliberately_bad_template_fails_them() {
    let (passed, output) = guard("infra/testdata/bad-template.yaml");
    assert!(!passed, "Guard passed a bad template:\n{output}");
    for rule in [
        "IAM_NO_INLINE_POLICY_CHECK",
        "LAMBDA_CONCURRENCY_CHECK",
        "LAMBDA_DLQ_CHECK",
        "LAMBDA_INSIDE_VPC",
        "DYNAMODB_PITR_ENABLED",
        "SNS_ENCRYPTED_KMS",
    ] {
        assert!(output.contains(rule), "{rule} should fail:\n{output}");
    }
}

#[test]
fn a_circular_dependency_is_refused_before_any_rule_runs() {
    let (passed, output) = guard("infra/testdata/cyclic-template.yaml");
    assert!(!passed, "{output}");
    assert!(output.contains("circular dependency"), "{output}");
}
