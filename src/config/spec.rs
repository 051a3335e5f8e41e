//! The Airbyte `connectionSpecification`, generated from [`ConfigSpec`] by schemars with
//! draft-07 settings and tidied into the shape Airbyte's UI and linters expect.

use serde_json::Value;

use super::ConfigSpec;

/// The Airbyte `connectionSpecification`: draft-07, subschemas inlined.
pub fn connection_specification() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let schema = settings
        .into_generator()
        .into_root_schema_for::<ConfigSpec>();
    let mut value = schema.to_value();
    unwrap_doc_lines(&mut value);
    if let Some(props) = value.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.values_mut().for_each(tidy_property);
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), "Postmark Source Spec".into());
        obj.remove("description");
    }
    value
}

/// Airbyte-style property schemas: optional fields are simply not required (no `null` in
/// `type`, no `default: null`), and schemars' Rust number formats (`uint32`) are dropped.
fn tidy_property(p: &mut Value) {
    let Some(obj) = p.as_object_mut() else { return };
    if let Some(Value::Array(types)) = obj.get("type") {
        let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if non_null.len() == 1 {
            obj.insert("type".into(), non_null[0].clone());
        }
    }
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    let keep_format = matches!(
        obj.get("format").and_then(|f| f.as_str()),
        Some("date-time" | "date" | "uri")
    );
    if !keep_format {
        obj.remove("format");
    }
}

/// Doc comments are wrapped at 100 columns; descriptions read better as one paragraph.
fn unwrap_doc_lines(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "description" {
                    if let Value::String(s) = child {
                        *s = s.replace('\n', " ");
                    }
                } else {
                    unwrap_doc_lines(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_doc_lines),
        _ => {}
    }
}
