//! Lambda's event filtering (`FilterCriteria`): EventBridge's pattern syntax, applied to each
//! stream record as Lambda delivers it. Supported: nested objects, lists of values (equality of
//! strings, numbers, booleans, null) and the operators `prefix`, `suffix`,
//! `equals-ignore-case`, `anything-but` (a value, a list or `{"prefix": …}`), `exists` and
//! `numeric`. Anything else is refused by [`check`] when the stack starts.

use serde_json::Value;

/// Whether `pattern` is one the local stack evaluates exactly; why not otherwise.
pub fn check(pattern: &Value) -> Result<(), String> {
    let obj = pattern
        .as_object()
        .filter(|o| !o.is_empty())
        .ok_or("a pattern is a non-empty JSON object")?;
    for (k, v) in obj {
        match v {
            Value::Object(_) => check(v).map_err(|e| format!("{k}: {e}"))?,
            Value::Array(list) if !list.is_empty() => {
                for item in list {
                    check_matcher(item).map_err(|e| format!("{k}: {e}"))?;
                }
            }
            _ => return Err(format!("{k}: expected an object or a non-empty list")),
        }
    }
    Ok(())
}

fn check_matcher(m: &Value) -> Result<(), String> {
    let Value::Object(op) = m else {
        return match m {
            Value::Array(_) => Err("a list inside a list".into()),
            _ => Ok(()),
        };
    };
    let (name, arg) = match op.iter().next() {
        Some(pair) if op.len() == 1 => pair,
        _ => return Err("an operator object holds exactly one operator".into()),
    };
    let ok = match name.as_str() {
        "prefix" | "suffix" | "equals-ignore-case" => arg.is_string(),
        "exists" => arg.is_boolean(),
        "anything-but" => match arg {
            Value::Array(l) => l.iter().all(|v| v.is_string() || v.is_number()),
            Value::Object(o) => o.len() == 1 && o.get("prefix").is_some_and(Value::is_string),
            v => v.is_string() || v.is_number(),
        },
        "numeric" => numeric_ops(arg).is_some(),
        _ => {
            return Err(format!(
                "operator {name:?} is not evaluated by the local stack"
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad argument of {name}: {arg}"))
    }
}

fn numeric_ops(arg: &Value) -> Option<Vec<(&str, f64)>> {
    let list = arg
        .as_array()
        .filter(|l| !l.is_empty() && l.len() % 2 == 0)?;
    list.chunks(2)
        .map(|c| {
            let op = c[0]
                .as_str()
                .filter(|o| ["<", "<=", "=", ">", ">="].contains(o))?;
            Some((op, c[1].as_f64()?))
        })
        .collect()
}

/// Whether `record` matches `pattern` (a checked one).
pub fn matches(pattern: &Value, record: &Value) -> bool {
    let Some(obj) = pattern.as_object() else {
        return false;
    };
    obj.iter().all(|(k, p)| {
        let field = record.get(k);
        match p {
            Value::Object(_) => field.is_some_and(|f| f.is_object() && matches(p, f)),
            Value::Array(list) => list.iter().any(|m| matcher(m, field)),
            _ => false,
        }
    })
}

fn matcher(m: &Value, field: Option<&Value>) -> bool {
    if let Value::Object(op) = m {
        if let Some(Value::Bool(want)) = op.get("exists") {
            return field.is_some() == *want;
        }
    }
    match field {
        None | Some(Value::Object(_)) => false,
        Some(Value::Array(values)) => values.iter().any(|v| one(m, v)),
        Some(v) => one(m, v),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn one(m: &Value, v: &Value) -> bool {
    let Value::Object(op) = m else {
        return equal(m, v);
    };
    let Some((name, arg)) = op.iter().next() else {
        return false;
    };
    let text = v.as_str();
    match name.as_str() {
        "prefix" => text
            .zip(arg.as_str())
            .is_some_and(|(t, p)| t.starts_with(p)),
        "suffix" => text.zip(arg.as_str()).is_some_and(|(t, s)| t.ends_with(s)),
        "equals-ignore-case" => text
            .zip(arg.as_str())
            .is_some_and(|(t, s)| t.to_lowercase() == s.to_lowercase()),
        "anything-but" => match arg {
            Value::Array(l) => !l.iter().any(|x| equal(x, v)),
            Value::Object(o) => match (o.get("prefix").and_then(Value::as_str), text) {
                (Some(p), Some(t)) => !t.starts_with(p),
                _ => false,
            },
            x => !equal(x, v),
        },
        "numeric" => match (numeric_ops(arg), v.as_f64()) {
            (Some(ops), Some(x)) => ops.iter().all(|(op, y)| match *op {
                "<" => x < *y,
                "<=" => x <= *y,
                "=" => x == *y,
                ">" => x > *y,
                _ => x >= *y,
            }),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(sk: &str, name: &str) -> Value {
        json!({"eventName": name, "dynamodb": {"NewImage": {"sk": {"S": sk}, "n": {"N": "5"}}}})
    }

    #[test]
    fn patterns_match_as_lambda_filters_do() {
        let messages = json!({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"sk": {"S": [{"prefix": "m#"}]}}}});
        assert!(check(&messages).is_ok());
        assert!(matches(&messages, &record("m#1", "INSERT")));
        assert!(!matches(&messages, &record("m#1", "MODIFY")));
        assert!(!matches(&messages, &record("d", "INSERT")));
        assert!(!matches(&messages, &json!({"eventName": "INSERT"})));
        let missing = json!({"dynamodb": {"NewImage": {"gone": [{"exists": false}], "sk": {"S": [{"anything-but": {"prefix": "d"}}]}}}});
        assert!(check(&missing).is_ok());
        assert!(matches(&missing, &record("m#1", "INSERT")));
        assert!(!matches(&missing, &record("d#1", "INSERT")));
        let numbers =
            json!({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 4, "<=", 5]}]}}}});
        // DynamoDB numbers are strings on the wire: a numeric match on them fails, as in Lambda
        assert!(!matches(&numbers, &record("m#1", "INSERT")));
        assert!(matches(
            &json!({"a": [{"numeric": [">", 4]}]}),
            &json!({"a": 5})
        ));
        assert!(matches(&json!({"a": [5, "x"]}), &json!({"a": 5.0})));
        assert!(matches(
            &json!({"a": [{"anything-but": ["x", "y"]}]}),
            &json!({"a": "z"})
        ));
        assert!(!matches(
            &json!({"a": [{"anything-but": "z"}]}),
            &json!({"a": "z"})
        ));
        assert!(matches(
            &json!({"a": [{"suffix": ".jpg"}]}),
            &json!({"a": ["b.png", "c.jpg"]})
        ));
        assert!(matches(
            &json!({"a": [{"equals-ignore-case": "AbC"}]}),
            &json!({"a": "aBc"})
        ));
    }

    #[test]
    fn patterns_the_stack_cannot_evaluate_are_refused() {
        for bad in [
            json!({}),
            json!([]),
            json!({"a": "INSERT"}),
            json!({"a": []}),
            json!({"a": [{"wildcard": "x*"}]}),
            json!({"a": [{"prefix": 1}]}),
            json!({"a": [{"prefix": "a", "suffix": "b"}]}),
            json!({"a": [{"numeric": [">"]}]}),
            json!({"a": [[1]]}),
        ] {
            assert!(check(&bad).is_err(), "{bad}");
        }
    }
}
