//! A service's Kubernetes manifests: rendered from a Kustomize overlay
//! (`deploy/k8s/overlays/ENV`, over `deploy/k8s/base`) under a kustomization of the service's
//! own, which prefixes every name with the service's, labels everything with it, points the
//! image at the one built, names the service's Secret, and replaces the ConfigMap with the
//! service's settings (`services/NAME/deploy.toml`, else `deploy/k8s/base/config.toml`
//! rendered for it). `kubectl kustomize` builds `manifests.yaml` from it.
//!
//! Checked with `kubernetes-validate --strict` against the schemas of two Kubernetes versions
//! (offline), then against the rules a serving Deployment must keep, which no schema knows
//! (see [`check_rules`]): probes on the health routes, ports that match the settings, a
//! termination grace period that covers `preStop`, the drain and the request deadline, a
//! read-only root with a writable model cache, and secrets only by reference.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use super::Target;
use crate::template::{self, Values};

/// The Kubernetes versions whose schemas every rendering must pass.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.34.0"];
/// The venv of the deploy tools, and its requirements.
pub(super) const VENV: &str = ".cache/deploy-venv";
pub(super) const REQUIREMENTS: &str = "xtask/deploy-requirements.txt";
/// The image name in the base Deployment that the rendering replaces.
const BASE_IMAGE: &str = "oxiserve-service";
/// Where the ConfigMap is mounted, and the settings file in it (the Deployment's `--config`).
const CONFIG_DIR: &str = "/etc/oxiserve";
const CONFIG_FILE: &str = "/etc/oxiserve/config.toml";

/// The PrometheusRule's file in a rendering, and the Python that writes it from the alert
/// rules (`alerts.yml` in, the rule out).
const PROMETHEUS_RULE: &str = "prometheusrule.yaml";
const ALERTS_AS_RULE: &str = "import sys, yaml\n\
    groups = yaml.safe_load(open(sys.argv[1]))['groups']\n\
    rule = {'apiVersion': 'monitoring.coreos.com/v1', 'kind': 'PrometheusRule',\n\
    \x20       'metadata': {'name': 'oxiserve-alerts'}, 'spec': {'groups': groups}}\n\
    text = yaml.safe_dump(rule, sort_keys=False, width=1000)\n\
    open(sys.argv[2], 'w').write('# From deploy/observability/alerts.yml.\\n' + text)";

/// The rule checker of Prometheus: `PROMTOOL`, else `promtool` on the PATH.
pub(super) fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

/// Fails with what to do when `kubectl` is missing.
pub(super) fn require_kubectl(sh: &Shell) -> anyhow::Result<()> {
    let found = cmd!(sh, "kubectl version --client").quiet().ignore_stdout().ignore_stderr().run();
    found.context("`kubectl` is needed to render the manifests (`kubectl kustomize`): install it")
}

/// Writes the service's kustomization and settings into `target/deploy/SERVICE/ENV/` and
/// builds `manifests.yaml` there; returns its path.
/// With `monitoring`, the Prometheus Operator's objects are added: the ServiceMonitor of
/// `deploy/k8s/components/monitoring` and a PrometheusRule of `deploy/observability/alerts.yml`.
pub(super) fn render(
    sh: &Shell,
    root: &Path,
    python: &Path,
    target: &Target,
    image: &str,
    monitoring: bool,
) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/deploy").join(&target.service).join(&target.env);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let own = root.join("services").join(&target.service).join("deploy.toml");
    let config = match std::fs::read_to_string(&own) {
        Ok(config) => config,
        Err(_) => {
            let base = std::fs::read_to_string(root.join("deploy/k8s/base/config.toml"))?;
            template::render(&base, &Values::from([("name", target.service.clone())]))?
        }
    };
    std::fs::write(dir.join("config.toml"), config)?;
    if monitoring {
        let alerts = root.join("deploy/observability/alerts.yml");
        let rule = dir.join(PROMETHEUS_RULE);
        cmd!(sh, "{python} -c {ALERTS_AS_RULE} {alerts} {rule}").quiet().run()?;
    }
    let text = kustomization(&target.service, &target.env, image, monitoring);
    std::fs::write(dir.join("kustomization.yaml"), text)?;
    let manifests = cmd!(sh, "kubectl kustomize {dir}").quiet().read()?;
    let path = dir.join("manifests.yaml");
    std::fs::write(&path, manifests + "\n")?;
    Ok(path)
}

/// The service's kustomization over the overlay of `env` (four directories up from where it
/// is written).
fn kustomization(service: &str, env: &str, image: &str, monitoring: bool) -> String {
    let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let mut text = format!(
        "# Written by `cargo xtask deploy --service {service} --env {env}`.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n  - ../../../../deploy/k8s/overlays/{env}\n"
    );
    if monitoring {
        text += &format!(
            "  - {PROMETHEUS_RULE}\ncomponents:\n  - ../../../../deploy/k8s/components/monitoring\n"
        );
    }
    text += &format!(
        "namePrefix: {service}-\n\
         labels:\n  - pairs:\n      app.kubernetes.io/name: {service}\n    includeSelectors: true\n\
         \x20 - pairs:\n      app.kubernetes.io/version: {tag:?}\n\
         images:\n  - name: {BASE_IMAGE}\n    newName: {repository}\n    newTag: {tag:?}\n\
         configMapGenerator:\n  - name: oxiserve-config\n    behavior: replace\n    files:\n      - config.toml\n\
         patches:\n  - target:\n      kind: Deployment\n    patch: |-\n\
         \x20     - op: replace\n        path: /spec/template/spec/containers/0/envFrom/0/secretRef/name\n\
         \x20       value: {service}-secrets\n"
    );
    if monitoring {
        // Kustomize does not know the ServiceMonitor's selector: the service's name goes in here.
        text += &format!(
            "  - target:\n      kind: ServiceMonitor\n    patch: |-\n\
             \x20     - op: add\n        path: /spec/selector/matchLabels/app.kubernetes.io~1name\n\
             \x20       value: {service}\n"
        );
    }
    text
}

/// Validates `manifests` against the schemas of every Kubernetes version we support, offline
/// (`python` is the deploy tools' venv's).
pub(super) fn validate(sh: &Shell, python: &Path, manifests: &Path) -> anyhow::Result<()> {
    let validate = python.with_file_name("kubernetes-validate");
    for version in KUBERNETES_VERSIONS {
        // The Prometheus Operator's kinds have no schema there (a warning, hidden): the rules
        // and promtool check them.
        cmd!(sh, "{validate} --strict --quiet --no-warn -k {version} {manifests}")
            .quiet()
            .run()
            .with_context(|| {
                format!("{} is not valid Kubernetes {version}", manifests.display())
            })?;
    }
    Ok(())
}

/// Validates `manifests` against the schemas, then checks the serving rules.
pub(super) fn check(sh: &Shell, python: &Path, manifests: &Path) -> anyhow::Result<()> {
    validate(sh, python, manifests)?;
    let as_json = "import json, sys, tomllib, yaml\n\
                   docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
                   maps = [d for d in docs if d['kind'] == 'ConfigMap']\n\
                   config = [tomllib.loads(m['data']['config.toml']) for m in maps]\n\
                   print(json.dumps({'documents': docs, 'config': config}))";
    let read = cmd!(sh, "{python} -c {as_json} {manifests}").quiet().read()?;
    let rendered: Value = serde_json::from_str(&read)?;
    let problems = check_rules(&rendered["documents"], &rendered["config"]);
    if !problems.is_empty() {
        bail!("{} breaks the serving rules:\n  {}", manifests.display(), problems.join("\n  "));
    }
    let documents = rendered["documents"].as_array().into_iter().flatten();
    for rule in documents.filter(|document| document["kind"] == "PrometheusRule") {
        let file = manifests.with_file_name("rules.check.yml");
        std::fs::write(&file, serde_json::to_string(&rule["spec"])?)?;
        let promtool = promtool();
        cmd!(sh, "{promtool} check rules {file}").quiet().ignore_stdout().run().with_context(
            || format!("promtool refuses the PrometheusRule of {}", manifests.display()),
        )?;
    }
    Ok(())
}

/// The rules of a serving Deployment that schemas do not check, on the rendered documents and
/// the settings in their ConfigMap(s); each broken rule is one line in the answer.
fn check_rules(documents: &Value, configs: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut say = |problem: String| problems.push(problem);
    let empty = Vec::new();
    let documents = documents.as_array().unwrap_or(&empty);
    let of_kind = |kind: &'static str| documents.iter().filter(move |d| d["kind"] == kind);
    if let Some(secret) = of_kind("Secret").next() {
        say(format!(
            "a Secret is rendered ({}): secrets are referenced, never written",
            secret["metadata"]["name"]
        ));
    }
    let (Some(deployment), Some(config)) = (of_kind("Deployment").next(), configs.get(0)) else {
        say("no Deployment and ConfigMap with config.toml are rendered".into());
        return problems;
    };
    let name = &deployment["metadata"]["name"];
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let Some(container) = pod["containers"].get(0) else {
        say("the Deployment has no container".into());
        return problems;
    };
    // Settings, with oxiserve's defaults where the file is silent.
    let setting =
        |section: &str, key: &str, default: i64| config[section][key].as_i64().unwrap_or(default);
    if config["http"]["host"] != "0.0.0.0" {
        say("http.host must be 0.0.0.0: the default 127.0.0.1 is unreachable from outside the pod"
            .into());
    }
    if config["telemetry"]["metrics_port"].is_null() {
        say("telemetry.metrics_port must be set: the Service has a metrics port".into());
    }
    let ports = [
        ("http", setting("http", "port", 8080)),
        ("grpc", setting("grpc", "port", 8081)),
        ("metrics", setting("telemetry", "metrics_port", 0)),
    ];
    for (port_name, wanted) in ports {
        let ports = container["ports"].as_array().unwrap_or(&empty);
        let port = ports.iter().find(|p| p["name"] == port_name);
        if port.and_then(|p| p["containerPort"].as_i64()) != Some(wanted) {
            say(format!("container port `{port_name}` must be {wanted}, as the settings say"));
        }
    }
    for (probe, path) in [
        ("startupProbe", "/health/ready"),
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        let get = &container[probe]["httpGet"];
        if get["path"] != path || get["port"] != "http" {
            say(format!("{probe} must GET {path} on the http port"));
        }
    }
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let drain_ms = pre_stop * 1000
        + setting("http", "shutdown_grace_ms", 2000)
        + setting("limits", "request_timeout_ms", 10_000);
    if pre_stop == 0 {
        say("the container needs a preStop sleep: endpoints must drop the pod before SIGTERM"
            .into());
    }
    if grace * 1000 <= drain_ms {
        say(format!(
            "terminationGracePeriodSeconds {grace} must exceed preStop, http.shutdown_grace_ms \
             and limits.request_timeout_ms together ({drain_ms} ms)"
        ));
    }
    let resources = &container["resources"];
    for bound in ["requests", "limits"] {
        if resources[bound]["cpu"].is_null() || resources[bound]["memory"].is_null() {
            say(format!("the container needs cpu and memory {bound}"));
        }
    }
    let security = &container["securityContext"];
    if security["readOnlyRootFilesystem"] != true || pod["securityContext"]["runAsNonRoot"] != true
    {
        say("the container must run as non-root on a read-only root filesystem".into());
    }
    let mounts = container["volumeMounts"].as_array().unwrap_or(&empty);
    let mounted = |path: &str| {
        mounts.iter().any(|m| m["mountPath"].as_str().is_some_and(|at| path.starts_with(at)))
    };
    let cache = config["models"]["cache_dir"].as_str().unwrap_or(".cache/models");
    if !cache.starts_with('/') || !mounted(cache) {
        say(format!("models.cache_dir ({cache}) must be an absolute path on a mounted volume"));
    }
    let args: Vec<&str> =
        container["args"].as_array().unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
    if !mounted(CONFIG_DIR) || !args.windows(2).any(|w| w == ["--config", CONFIG_FILE]) {
        say(format!(
            "the settings must be mounted at {CONFIG_DIR} and passed as --config {CONFIG_FILE}"
        ));
    }
    for variable in container["env"].as_array().unwrap_or(&empty) {
        let key = variable["name"].as_str().unwrap_or_default();
        let secret =
            ["TOKEN", "SECRET", "PASSWORD", "KEY", "REDIS_URL"].iter().any(|s| key.contains(s));
        if secret && !variable["value"].is_null() {
            say(format!("{key} is written in the manifest: take it from a Secret (valueFrom)"));
        }
    }
    let selects_pods = |selector: &Value| {
        selector.as_object().is_some_and(|selector| {
            !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
        })
    };
    for service in of_kind("Service") {
        if !selects_pods(&service["spec"]["selector"]) {
            say("the Service's selector must match the Deployment's pods".into());
        }
    }
    for budget in of_kind("PodDisruptionBudget") {
        if !selects_pods(&budget["spec"]["selector"]["matchLabels"]) {
            say("the PodDisruptionBudget's selector must match the Deployment's pods".into());
        }
    }
    for autoscaler in of_kind("HorizontalPodAutoscaler") {
        if &autoscaler["spec"]["scaleTargetRef"]["name"] != name {
            say("the HorizontalPodAutoscaler must scale the Deployment".into());
        }
    }
    for monitor in of_kind("ServiceMonitor") {
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        let scraped = of_kind("Service").any(|service| {
            let labels = &service["metadata"]["labels"];
            let selected = selector
                .as_object()
                .is_some_and(|selector| selector.iter().all(|(key, value)| &labels[key] == value));
            let ports = service["spec"]["ports"].as_array().unwrap_or(&empty);
            let endpoints = monitor["spec"]["endpoints"].as_array().unwrap_or(&empty);
            selected
                && !endpoints.is_empty()
                && endpoints.iter().all(|e| ports.iter().any(|p| p["name"] == e["port"]))
        });
        if selector.get("app.kubernetes.io/name").is_none() || !scraped {
            say("the ServiceMonitor must select this service's Service by name and scrape a port it has".into());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A rendering that keeps every rule, as the base renders (cut to what the rules read).
    fn rendering() -> (Value, Value) {
        let labels =
            json!({"app.kubernetes.io/name": "demo", "app.kubernetes.io/component": "inference"});
        let probe = |path: &str| json!({"httpGet": {"path": path, "port": "http"}});
        let deployment = json!({
            "kind": "Deployment",
            "metadata": {"name": "demo-oxiserve"},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 30,
                "securityContext": {"runAsNonRoot": true},
                "containers": [{
                    "args": ["--config", "/etc/oxiserve/config.toml"],
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "grpc", "containerPort": 8081},
                        {"name": "metrics", "containerPort": 9090}
                    ],
                    "startupProbe": probe("/health/ready"),
                    "readinessProbe": probe("/health/ready"),
                    "livenessProbe": probe("/health/live"),
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "256Mi"},
                        "limits": {"cpu": "2", "memory": "1Gi"}
                    },
                    "securityContext": {"readOnlyRootFilesystem": true},
                    "volumeMounts": [
                        {"mountPath": "/etc/oxiserve"},
                        {"mountPath": "/var/cache/oxiserve"}
                    ]
                }]
            }}}
        });
        let documents = json!([
            deployment,
            {"kind": "Service", "spec": {"selector": labels}},
            {"kind": "PodDisruptionBudget", "spec": {"selector": {"matchLabels": labels}}},
            {"kind": "HorizontalPodAutoscaler", "spec": {"scaleTargetRef": {"name": "demo-oxiserve"}}}
        ]);
        let config = json!([{
            "http": {"host": "0.0.0.0", "port": 8080, "shutdown_grace_ms": 5000},
            "grpc": {"port": 8081},
            "limits": {"request_timeout_ms": 10000},
            "telemetry": {"metrics_port": 9090},
            "models": {"cache_dir": "/var/cache/oxiserve/models"}
        }]);
        (documents, config)
    }

    /// The one problem found after `change`, which must name `expected`.
    fn broken(change: impl FnOnce(&mut Value, &mut Value), expected: &str) {
        let (mut documents, mut config) = rendering();
        change(&mut documents, &mut config);
        let problems = check_rules(&documents, &config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(expected), "{problems:?}");
    }

    #[test]
    fn the_base_rendering_keeps_the_rules() {
        let (documents, config) = rendering();
        assert_eq!(check_rules(&documents, &config), Vec::<String>::new());
    }

    #[test]
    fn each_broken_rule_is_named() {
        fn container(documents: &mut Value) -> &mut Value {
            &mut documents[0]["spec"]["template"]["spec"]["containers"][0]
        }
        broken(|_, c| c[0]["http"]["host"] = json!("127.0.0.1"), "http.host");
        broken(|_, c| c[0]["grpc"]["port"] = json!(9000), "`grpc` must be 9000");
        broken(
            |d, _| container(d)["livenessProbe"]["httpGet"]["path"] = json!("/"),
            "livenessProbe",
        );
        broken(
            |_, c| c[0]["limits"]["request_timeout_ms"] = json!(30000),
            "terminationGracePeriodSeconds",
        );
        broken(|d, _| container(d)["securityContext"] = json!({}), "read-only root");
        broken(|_, c| c[0]["models"]["cache_dir"] = json!("/srv/models"), "models.cache_dir");
        broken(|d, _| container(d)["resources"]["limits"] = json!({}), "limits");
        broken(
            |d, _| container(d)["env"] = json!([{"name": "OXISERVE_ADMIN__TOKEN", "value": "x"}]),
            "OXISERVE_ADMIN__TOKEN",
        );
        broken(|d, _| d[1]["spec"]["selector"] = json!({"app": "other"}), "Service's selector");
        broken(|d, _| d[3]["spec"]["scaleTargetRef"]["name"] = json!("x"), "scale the Deployment");
        broken(
            |d, _| {
                d.as_array_mut().unwrap().push(json!({"kind": "Secret", "metadata": {"name": "s"}}))
            },
            "a Secret is rendered",
        );
    }

    #[test]
    fn a_service_monitor_must_scrape_this_service() {
        let (mut documents, config) = rendering();
        let labels =
            json!({"app.kubernetes.io/name": "demo", "app.kubernetes.io/component": "inference"});
        documents[1]["metadata"] = json!({"labels": labels});
        documents[1]["spec"]["ports"] = json!([{"name": "http"}, {"name": "metrics"}]);
        let monitor = |selector: Value, port: &str| {
            let spec =
                json!({"selector": {"matchLabels": selector}, "endpoints": [{"port": port}]});
            json!({"kind": "ServiceMonitor", "spec": spec})
        };
        for (selector, port, keeps) in [
            (json!({"app.kubernetes.io/name": "demo"}), "metrics", true),
            (json!({"app.kubernetes.io/name": "demo"}), "http-metrics", false),
            (json!({"app.kubernetes.io/name": "other"}), "metrics", false),
            (json!({"app.kubernetes.io/component": "inference"}), "metrics", false),
        ] {
            let mut documents = documents.clone();
            documents.as_array_mut().unwrap().push(monitor(selector.clone(), port));
            let problems = check_rules(&documents, &config);
            assert_eq!(problems.is_empty(), keeps, "{selector} {port}: {problems:?}");
        }
    }

    #[test]
    fn the_service_kustomization_names_its_image_secret_overlay_and_monitoring() {
        let text = kustomization("demo", "prod", "registry:5000/demo:1.2.0", true);
        for part in [
            "../../../../deploy/k8s/overlays/prod",
            "namePrefix: demo-",
            "newName: registry:5000/demo",
            "newTag: \"1.2.0\"",
            "value: demo-secrets",
            "behavior: replace",
            "  - prometheusrule.yaml",
            "../../../../deploy/k8s/components/monitoring",
            "path: /spec/selector/matchLabels/app.kubernetes.io~1name",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
