//! `GET /api/v1/openapi.json` against a real broker: served without a
//! token, every route it describes answers (no 404 "no such endpoint", no
//! 405), and the response schemas of representative routes match what
//! those routes really answer (a small JSON Schema checker: type, enum,
//! required, properties, additionalProperties, items, oneOf, $ref,
//! minimum, maximum).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use serde_json::Value;

use lanyard_e2e::world::{api, api_with, World, READY};

/// Where the schema `s` (maybe a `$ref`) points in `doc`.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "{r} does not resolve");
            resolve(doc, target)
        }
        None => s,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every way `value` (at `at`) breaks `schema`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = choices
            .iter()
            .filter(|c| {
                let mut e = Vec::new();
                check(doc, c, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if fitting != 1 {
            errors.push(format!("{at}: fits {fitting} of oneOf, not 1: {value}"));
        }
        return;
    }
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{at}: bad type {t}"),
        };
        let actual = type_name(value);
        // An integer is a number too.
        let fits =
            allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
        if !fits {
            errors.push(format!(
                "{at}: {actual} where {allowed:?} is documented: {value}"
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            errors.push(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n > max {
            errors.push(format!("{at}: {n} > maximum {max}"));
        }
    }
    match value {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    errors.push(format!("{at}: required field {name:?} is missing"));
                }
            }
            for (name, v) in fields {
                let here = format!("{at}.{name}");
                match (
                    props.and_then(|p| p.get(name)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => check(doc, s, v, &here, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{here}: not documented"))
                    }
                    (None, Some(s @ Value::Object(_))) => check(doc, s, v, &here, errors),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(doc, s, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// The schema of `method path`'s `status` JSON answer.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let s =
        &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(s.is_object(), "no {status} JSON schema for {method} {path}");
    s
}

#[test]
fn the_document_is_served_and_every_route_in_it_answers() {
    let w = World::new();
    let (status, text) = api(&w, "GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(include_str!("../../broker/src/api/openapi.json")).unwrap()
    );
    let token = w.broker.admin_token();
    let mut probed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Path parameters that name nothing: a handler's own 404, never
        // the router's. No body: nothing is changed.
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "no-such-x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let (status, body) = api(&w, &method, &format!("/api/v1{concrete}"), Some(&token));
            assert_ne!(status, 405, "{method} {path}: not served: {body}");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path}: not served: {status} {body}"
            );
            probed += 1;
        }
    }
    assert!(probed >= 45, "{probed}");
    // The checks above can fail: an undocumented method and path are refused.
    let (status, _) = api(&w, "PUT", "/api/v1/staff", Some(&token));
    assert_eq!(status, 405);
    let (status, body) = api(&w, "GET", "/api/v1/no-such-route", Some(&token));
    assert!(status == 404 && body.contains("no such endpoint"), "{body}");
}

#[test]
fn documented_response_schemas_match_real_answers() {
    let w = World::new();
    let doc: Value = serde_json::from_str(&api(&w, "GET", "/api/v1/openapi.json", None).1).unwrap();
    let token = w.broker.admin_token();
    // Something in every list: a person with a session on the laptop, a
    // request, a code.
    w.person("s.hema", "hr");
    let agent = w.agent("laptop", "s.hema", Some("LT-1"));
    let mut up = agent.up(&[]);
    up.wait_ready(READY);
    w.person("r.queue", "housing");
    w.broker
        .lanyard(&["requests", "add", "r.queue"], None, None)
        .ok();
    w.code(&["--personal", "r.queue"]);

    let mut errors = Vec::new();
    for path in [
        "/staff",
        "/devices",
        "/sessions",
        "/load",
        "/groups",
        "/apps",
        "/me",
        "/tokens",
        "/nodes",
        "/enrolment-codes",
        "/requests",
        "/audit",
        "/audit/verify",
        "/staff/s.hema",
        "/devices/LT-1",
        "/devices/LT-1/history",
        "/reports/inventory",
    ] {
        let (status, body) = api(&w, "GET", &format!("/api/v1{path}"), Some(&token));
        assert_eq!(status, 200, "GET {path}: {body}");
        let value: Value = serde_json::from_str(&body).unwrap();
        if let Value::Array(items) = &value {
            assert!(
                !items.is_empty(),
                "GET {path}: an empty list checks no item"
            );
        }
        let templated = if path.starts_with("/staff/") {
            "/staff/{username}"
        } else if path == "/devices/LT-1" {
            "/devices/{tag}"
        } else if path == "/devices/LT-1/history" {
            "/devices/{tag}/history"
        } else {
            path
        };
        let schema = response_schema(&doc, "get", templated, "200");
        check(&doc, schema, &value, &format!("GET {path}"), &mut errors);
    }
    // An error answer, as every route's default documents it.
    let (status, body) = api(&w, "GET", "/api/v1/staff/no.one", Some(&token));
    assert_eq!(status, 404);
    let schema = response_schema(&doc, "get", "/staff/{username}", "default");
    check(
        &doc,
        schema,
        &serde_json::from_str(&body).unwrap(),
        "404",
        &mut errors,
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    drop(up);
}

#[test]
fn the_schema_checker_finds_what_differs() {
    let doc = serde_json::json!({"components": {"schemas": {
        "P": {"type": "object", "additionalProperties": false, "required": ["a", "b"],
              "properties": {"a": {"type": "string", "enum": ["x", "y"]},
                             "b": {"type": ["integer", "null"], "minimum": 1},
                             "c": {"type": "array", "items": {"type": "boolean"}}}}
    }}});
    let schema = serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/P"}});
    let errors = |v: Value| {
        let mut e = Vec::new();
        check(&doc, &schema, &v, "v", &mut e);
        e
    };
    assert!(errors(serde_json::json!([{"a": "x", "b": null, "c": [true]}])).is_empty());
    for (bad, why) in [
        (serde_json::json!([{"a": "z", "b": 1}]), "is not one of"),
        (serde_json::json!([{"a": "x"}]), "\"b\" is missing"),
        (
            serde_json::json!([{"a": "x", "b": 1, "d": 0}]),
            "v[0].d: not documented",
        ),
        (serde_json::json!([{"a": "x", "b": "1"}]), "string where"),
        (serde_json::json!([{"a": "x", "b": 0}]), "minimum"),
        (
            serde_json::json!([{"a": "x", "b": 2, "c": [1]}]),
            "v[0].c[0]: integer",
        ),
        (serde_json::json!({"a": "x"}), "object where"),
    ] {
        let e = errors(bad.clone());
        assert!(e.iter().any(|m| m.contains(why)), "{bad}: {e:?}");
    }
}

/// A value of the schema's shape: every property, of its type.
fn sample(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    let t = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .find_map(|t| t.as_str().filter(|t| *t != "null"))
            .unwrap(),
        other => panic!("no type in {other}"),
    };
    match t {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), sample(doc, v)))
                .collect(),
        ),
        "array" => Value::Array(vec![sample(doc, &schema["items"])]),
        "string" => Value::String("no-such-x".into()),
        "integer" | "number" => {
            serde_json::json!(schema.get("minimum").cloned().unwrap_or(1.into()))
        }
        "boolean" => Value::Bool(false),
        other => panic!("{other}"),
    }
}

#[test]
fn documented_request_bodies_name_the_fields_the_broker_reads() {
    let w = World::new();
    let doc: Value = serde_json::from_str(&api(&w, "GET", "/api/v1/openapi.json", None).1).unwrap();
    let token = w.broker.admin_token();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "no-such-x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let url = format!("/api/v1{concrete}");
        for (method, op) in item.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if !schema.is_object() {
                continue;
            }
            let method = method.to_uppercase();
            // Every documented field is one the broker knows (it refuses
            // unknown fields by name).
            let full = sample(&doc, schema);
            let (status, body) = api_with(&w, &method, &url, Some(&token), Some(&full));
            assert!(
                !body.contains("unknown field"),
                "{method} {path} {full}: {status} {body}"
            );
            // A field the document does not name is refused.
            let mut extra = full.clone();
            extra["not_documented"] = Value::Bool(true);
            let (status, body) = api_with(&w, &method, &url, Some(&token), Some(&extra));
            assert!(
                status == 400 && body.contains("unknown field `not_documented`"),
                "{method} {path}: {status} {body}"
            );
            // What the document requires, the broker requires, and no more.
            let required: Vec<&str> = resolve(&doc, schema)["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut minimal = full.clone();
            minimal
                .as_object_mut()
                .unwrap()
                .retain(|k, _| required.contains(&k.as_str()));
            let (status, body) = api_with(&w, &method, &url, Some(&token), Some(&minimal));
            assert!(
                !body.contains("missing field"),
                "{method} {path} {minimal}: {status} {body}"
            );
            for required in required {
                let mut short = full.clone();
                short.as_object_mut().unwrap().remove(required);
                let (status, body) = api_with(&w, &method, &url, Some(&token), Some(&short));
                assert!(
                    status == 400 && body.contains(&format!("missing field `{required}`")),
                    "{method} {path} without {required}: {status} {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}
