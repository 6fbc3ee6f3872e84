//! `cargo xtask deploy` on bad input: an unknown service or environment, a missing tool, or
//! `--apply` without a cluster to apply to stops it with a message saying what to do, exit
//! code 1, before anything is built or rendered.

use std::path::Path;
use std::process::Command;

use self::common::{podman, root};

mod common;

/// Runs `xtask deploy` with `args` (and `environment`): its exit code and what it said.
fn deploy(args: &[&str], environment: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.current_dir(root()).arg("deploy").args(args).env("RUST_BACKTRACE", "0");
    for (key, value) in environment {
        command.env(key, value);
    }
    let output = command.output().expect("xtask runs");
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    (output.status.code(), said.into_owned())
}

#[test]
fn bad_input_stops_before_anything_is_built() {
    let empty = tempfile::tempdir().unwrap();
    let kubeconfig = empty.path().join("config");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    for (args, environment, expected) in [
        (
            vec!["--service", "no-such-service"],
            vec![],
            "no service `no-such-service` under services/; there are: image-orientation, \
             tabular-scoring, text-embedding",
        ),
        (
            vec!["--service", "tabular-scoring", "--env", "staging"],
            vec![],
            "no environment `staging` under deploy/k8s/overlays/; there are: dev, prod",
        ),
        // No tool on PATH: kubectl is the first one looked for.
        (vec!["--service", "tabular-scoring"], vec![("PATH", empty.path())], "`kubectl` is needed"),
        (
            vec!["--service", "tabular-scoring", "--apply"],
            vec![("KUBECONFIG", kubeconfig.as_path())],
            "kubectl has no current one",
        ),
    ] {
        let (code, said) = deploy(&args, &environment);
        assert_eq!(code, Some(1), "{args:?}: {said}");
        assert!(said.contains(expected), "{args:?}: {said}");
        assert!(!said.contains("deploy: 1/"), "{args:?} started building: {said}");
    }
}

#[test]
fn apply_stops_when_the_cluster_refuses_a_dry_run() {
    // A context whose API server does not answer: the dry run fails, nothing is applied.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = dir.path().join("config");
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: unreachable\n\
         clusters:\n- name: unreachable\n  cluster:\n    server: https://127.0.0.1:{port}\n\
         contexts:\n- name: unreachable\n  context:\n    cluster: unreachable\n    user: nobody\n\
         users:\n- name: nobody\n  user:\n    token: not-a-token\n"
    );
    std::fs::write(&kubeconfig, config).unwrap();
    let tag = format!("apply-{}", std::process::id());
    let args = ["--service", "tabular-scoring", "--debug", "--tag", &tag, "--apply"];
    let (code, said) = deploy(&args, &[("KUBECONFIG", kubeconfig.as_path())]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("4/5 check")
            && said.contains("5/5 apply to the kubectl context `unreachable`"),
        "{said}"
    );
    assert!(said.contains("refused the manifests in a dry run: nothing was applied"), "{said}");
    let _ = podman().args(["rmi", "--force", &format!("localhost/tabular-scoring:{tag}")]).output();
}
