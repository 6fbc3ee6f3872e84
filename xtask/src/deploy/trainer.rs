//! The training service's manifests (`deploy/trainer`): rendered with `kubectl kustomize`,
//! validated offline like a service's, and checked for the one thing schemas cannot see: the
//! three places that name the service's address agree. Its Service, the nightly CronJob's
//! `TRAINER_URL` and Alertmanager's webhook (`deploy/observability/alertmanager.yml`) must all
//! say `http://NAME:PORT`, or the schedule and the alerts would start no job.

use std::path::Path;

use anyhow::bail;
use serde_json::Value;
use xshell::{Shell, cmd};

use super::manifests;

/// Renders `deploy/trainer` into `target/deploy/trainer/manifests.yaml` and checks it.
pub(super) fn check(sh: &Shell, root: &Path, python: &Path) -> anyhow::Result<()> {
    let out = root.join("target/deploy/trainer");
    std::fs::create_dir_all(&out)?;
    let rendered = out.join("manifests.yaml");
    let kustomization = root.join("deploy/trainer");
    let text = cmd!(sh, "kubectl kustomize {kustomization}").quiet().read()?;
    std::fs::write(&rendered, text)?;
    manifests::validate(sh, python, &rendered)?;
    let as_json = "import json, sys, yaml\n\
                   docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
                   routing = yaml.safe_load(open(sys.argv[2]))\n\
                   print(json.dumps({'documents': docs, 'routing': routing}))";
    let routing = root.join("deploy/observability/alertmanager.yml");
    let read = cmd!(sh, "{python} -c {as_json} {rendered} {routing}").quiet().read()?;
    let parsed: Value = serde_json::from_str(&read)?;
    let problems = address_problems(&parsed["documents"], &parsed["routing"]);
    if !problems.is_empty() {
        bail!("{} and alertmanager.yml disagree:\n  {}", rendered.display(), problems.join("\n  "));
    }
    Ok(())
}

/// Where the Service's address (`http://NAME:PORT`) is named otherwise, one line each.
fn address_problems(documents: &Value, routing: &Value) -> Vec<String> {
    let all = documents.as_array().map(Vec::as_slice).unwrap_or_default();
    let of_kind = |kind: &'static str| all.iter().filter(move |d| d["kind"] == kind);
    let Some(service) = of_kind("Service").next() else {
        return vec!["no Service".into()];
    };
    let port = &service["spec"]["ports"][0]["port"];
    let address = format!("http://{}:{port}", service["metadata"]["name"].as_str().unwrap_or(""));
    let mut problems = Vec::new();
    let schedules: Vec<&Value> = of_kind("CronJob").collect();
    if schedules.is_empty() {
        problems.push("no CronJob: nothing retrains on a schedule".into());
    }
    for job in schedules {
        let containers = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
        let env = containers
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default());
        let urls: Vec<Value> =
            env.filter(|e| e["name"] == "TRAINER_URL").map(|e| e["value"].clone()).collect();
        if urls.iter().any(|url| url.as_str() != Some(&address)) || urls.is_empty() {
            problems
                .push(format!("CronJob {} calls {urls:?}, not {address}", job["metadata"]["name"]));
        }
    }
    let receivers = routing["receivers"].as_array().into_iter().flatten();
    let hooks: Vec<&str> = receivers
        .flat_map(|r| r["webhook_configs"].as_array().into_iter().flatten())
        .filter_map(|hook| hook["url"].as_str())
        .collect();
    let expected = format!("{address}/v1/alerts");
    if !hooks.contains(&expected.as_str()) {
        problems.push(format!("no Alertmanager webhook posts to {expected} (webhooks: {hooks:?})"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendering() -> (Value, Value) {
        let documents = serde_json::json!([
            {"kind": "Service", "metadata": {"name": "trainer"}, "spec": {"ports": [{"port": 8000}]}},
            {"kind": "CronJob", "metadata": {"name": "nightly"}, "spec": {"jobTemplate": {"spec":
                {"template": {"spec": {"containers": [{"env": [
                    {"name": "TRAINER_URL", "value": "http://trainer:8000"}]}]}}}}}},
        ]);
        let routing = serde_json::json!({"receivers": [{"name": "default"},
            {"name": "t", "webhook_configs": [{"url": "http://trainer:8000/v1/alerts"}]}]});
        (documents, routing)
    }

    #[test]
    fn agreeing_addresses_pass_and_each_disagreement_is_named() {
        let (documents, routing) = rendering();
        assert!(address_problems(&documents, &routing).is_empty());
        let mut moved = documents.clone();
        moved[0]["spec"]["ports"][0]["port"] = 9000.into();
        let problems = address_problems(&moved, &routing);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("calls") && problems[0].contains("http://trainer:9000"));
        assert!(
            problems[1].contains("no Alertmanager webhook posts to http://trainer:9000/v1/alerts")
        );
        let unscheduled = serde_json::json!([documents[0]]);
        let problems = address_problems(&unscheduled, &routing);
        assert_eq!(problems, ["no CronJob: nothing retrains on a schedule"]);
    }
}
