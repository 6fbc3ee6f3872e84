//! `cargo xtask setup | serve | test` for {{name}}: the tasks come from the `oxiserve-xtask`
//! crate, upgraded with the core, so this project carries no copy of them.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = xtask.parent().ok_or("xtask lives one level below the project root")?;
    Ok(oxiserve_xtask::standalone::main(root, "{{name}}")?)
}
