//! The gateway's JSON body extractor: axum's `Json` with its rejections mapped to problems,
//! so a malformed body, a wrong type, an unknown field or a refused value is a 4xx problem
//! naming the field at fault (its `field` member), never a 5xx or a plain-text message. A body
//! over the limit (axum's default, 2 MB) is 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use choreo::problem::{Kind, Problem};

use crate::error::invalid;

/// A JSON request body of type `T`, decoded through `T`'s parsing constructors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(&request) {
            return Err(Problem::new(
                Kind::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        Problem::new(Kind::PAYLOAD_TOO_LARGE, "the body is too large")
                    }
                    _ => Problem::bad_request(rejection.body_text()),
                })?;
        decode(&bytes).map(ApiJson)
    }
}

fn is_json(request: &Request) -> bool {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Decodes `bytes` as `T`, naming the field at fault when it fails.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => match field_of(&path, &message) {
                Some(field) => invalid(strip_position(&message), field),
                None => Problem::invalid(strip_position(&message)),
            },
            _ => Problem::bad_request(format!("the body is not valid JSON: {message}")),
        }
    })
}

/// The JSON path of the field at fault; for an unknown or missing field, that field itself.
fn field_of(path: &str, message: &str) -> Option<String> {
    let parent = (path != ".").then_some(path);
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (parent, named) {
        // serde_path_to_error already ends the path with an unknown field's name.
        (Some(parent), Some(name)) if parent == name || parent.ends_with(&format!(".{name}")) => {
            Some(parent.to_owned())
        }
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (parent, None) => parent.map(str::to_owned),
    }
}

/// serde_json appends " at line 1 column 42", which means nothing to a caller of an API.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::request::OrderRequest as PlaceOrder;

    fn refused(json: &str) -> (String, Option<String>) {
        let problem = decode::<PlaceOrder>(json.as_bytes()).unwrap_err();
        assert_eq!(
            problem.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{problem}"
        );
        let field = problem.extensions.get("field").and_then(|f| f.as_str());
        (problem.detail.clone(), field.map(str::to_owned))
    }

    #[test]
    fn a_refused_value_names_its_field() {
        let (message, field) = refused(r#"{"lines":[{"sku":"A","quantity":0}],"currency":"EUR"}"#);
        assert_eq!(field.as_deref(), Some("lines[0].quantity"));
        assert!(message.contains(r#"quantity "0""#), "{message}");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let (_, field) =
            refused(r#"{"lines":[{"sku":"A","quantity":1,"colour":"red"}],"currency":"EUR"}"#);
        assert_eq!(field.as_deref(), Some("lines[0].colour"));
        let (_, field) = refused(r#"{"lines":[{"sku":"A","quantity":1}],"currency":"EUR","x":1}"#);
        assert_eq!(field.as_deref(), Some("x"));
    }

    #[test]
    fn a_missing_field_is_named() {
        let (_, field) = refused(r#"{"lines":[{"sku":"A"}],"currency":"EUR"}"#);
        assert_eq!(field.as_deref(), Some("lines[0].quantity"));
        let (_, field) = refused(r#"{"lines":[{"sku":"A","quantity":1}]}"#);
        assert_eq!(field.as_deref(), Some("currency"));
    }

    #[test]
    fn a_wrong_type_is_invalid_and_broken_json_is_malformed() {
        let (_, field) = refused(r#"{"lines":"many","currency":"EUR"}"#);
        assert_eq!(field.as_deref(), Some("lines"));
        let broken = decode::<PlaceOrder>(b"{\"lines\": [").unwrap_err();
        assert!(broken.is(Kind::BAD_REQUEST));
    }
}
