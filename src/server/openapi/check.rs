//! A strict checker of JSON values against the schemas of the document, for
//! the tests. It covers the keywords the document uses, and it reports every
//! object property that the schema does not declare, so that a field added
//! to a response without its schema fails a test.

use regex::Regex;
use serde_json::Value;

/// Returns the problems of `value` against `schema`, each with its JSON path.
pub fn problems(document: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(document, schema, value, "$", &mut found);
    found
}

fn check(document: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(document, reference) {
            Some(target) => check(document, target, value, at, found),
            None => found.push(format!("{at}: unresolved $ref {reference}")),
        }
        return;
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|branch| problems_at(document, branch, value, at).is_empty())
                .count();
            let ok = if keyword == "oneOf" {
                matching == 1
            } else {
                matching >= 1
            };
            if !ok {
                found.push(format!(
                    "{at}: {value} matches {matching} branches of {keyword}"
                ));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|name| has_type(value, name)) {
            found.push(format!("{at}: {value} is not of type {allowed:?}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {values:?}"));
    }
    check_number(schema, value, at, found);
    check_string(schema, value, at, found);
    if let Value::Object(object) = value {
        check_object(document, schema, object, at, found);
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(
                document,
                item_schema,
                item,
                &format!("{at}[{index}]"),
                found,
            );
        }
    }
}

fn problems_at(document: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    check(document, schema, value, at, &mut found);
    found
}

fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => false,
    }
}

fn check_number(schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let Some(number) = value.as_f64() else {
        return;
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && number < min
    {
        found.push(format!("{at}: {value} is below the minimum {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && number > max
    {
        found.push(format!("{at}: {value} is above the maximum {max}"));
    }
}

fn check_string(schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let Some(text) = value.as_str() else {
        return;
    };
    let length = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        found.push(format!("{at}: {value} is shorter than {min}"));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        found.push(format!("{at}: {value} is longer than {max}"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(regex) if regex.is_match(text) => {}
            Ok(_) => found.push(format!("{at}: {value} does not match {pattern}")),
            Err(e) => found.push(format!("{at}: invalid pattern {pattern}: {e}")),
        }
    }
}

fn check_object(
    document: &Value,
    schema: &Value,
    object: &serde_json::Map<String, Value>,
    at: &str,
    found: &mut Vec<String>,
) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !object.contains_key(name) {
            found.push(format!("{at}: required property {name} is missing"));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && object.len() as u64 > max
    {
        found.push(format!("{at}: more than {max} properties"));
    }
    let declared = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let open = schema.get("properties").is_none() && additional.is_none();
    for (name, item) in object {
        let here = format!("{at}.{name}");
        match (declared.and_then(|d| d.get(name)), additional) {
            (Some(property), _) => check(document, property, item, &here, found),
            (None, Some(extra)) if extra.is_object() => check(document, extra, item, &here, found),
            (None, _) if open => {}
            (None, _) => found.push(format!("{here}: property not declared in the schema")),
        }
    }
}
