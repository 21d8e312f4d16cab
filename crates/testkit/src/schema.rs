//! The report document's JSON Schema (`docs/report.schema.json`), for tests to validate every document
//! they produce against it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// `docs/report.schema.json`.
pub fn report_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report.schema.json")
}

struct Compiled {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

fn compiled() -> &'static Compiled {
    static SCHEMA: OnceLock<Compiled> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = report_schema_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        // Formats are not asserted; the schema spells times out with a pattern instead.
        let url = "file:///docs/report.schema.json";
        compiler
            .add_resource(url, schema)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let index = compiler
            .compile(url, &mut schemas)
            .unwrap_or_else(|e| panic!("{} does not compile: {e:#}", path.display()));
        Compiled { schemas, index }
    })
}

/// Fails the test, naming every violation, unless `document` is a valid report document.
pub fn assert_valid_report(document: &Value) {
    let c = compiled();
    if let Err(e) = c.schemas.validate(document, c.index) {
        panic!(
            "a report document does not match docs/report.schema.json:\n{e:#}\n{}",
            serde_json::to_string_pretty(document)
                .unwrap_or_default()
                .chars()
                .take(3000)
                .collect::<String>()
        );
    }
}

/// [`assert_valid_report`] over JSON text.
pub fn assert_valid_report_text(text: &str) -> Value {
    let document: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text:.2000}"));
    assert_valid_report(&document);
    document
}
