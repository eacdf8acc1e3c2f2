//! The request bodies, parsed: a [`ChargeRequest`] or [`RefundRequest`] exists only with valid
//! fields, so the handlers and the decision core never see a bad one.

use serde::Deserialize;

/// `POST /v1/charges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub order_id: String,
    pub customer_id: String,
    /// Positive.
    pub amount_minor: i64,
    /// Three uppercase ASCII letters.
    pub currency: String,
}

/// `POST /v1/refunds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge_id: String,
    /// Positive.
    pub amount_minor: i64,
}

#[derive(Deserialize)]
struct ChargeBody {
    idempotency_key: String,
    order_id: String,
    customer_id: String,
    amount_minor: i64,
    currency: String,
}

#[derive(Deserialize)]
struct RefundBody {
    idempotency_key: String,
    charge_id: String,
    amount_minor: i64,
}

impl ChargeRequest {
    /// Parses a JSON body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let body: ChargeBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(Self {
            idempotency_key: non_empty("idempotency_key", body.idempotency_key)?,
            order_id: non_empty("order_id", body.order_id)?,
            customer_id: non_empty("customer_id", body.customer_id)?,
            amount_minor: positive(body.amount_minor)?,
            currency: currency(body.currency)?,
        })
    }
}

impl RefundRequest {
    /// Parses a JSON body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let body: RefundBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(Self {
            idempotency_key: non_empty("idempotency_key", body.idempotency_key)?,
            charge_id: non_empty("charge_id", body.charge_id)?,
            amount_minor: positive(body.amount_minor)?,
        })
    }
}

fn non_empty(field: &str, value: String) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(format!("{field} must not be empty"))
    } else {
        Ok(value)
    }
}

fn positive(amount_minor: i64) -> Result<i64, String> {
    if amount_minor > 0 {
        Ok(amount_minor)
    } else {
        Err(format!("amount_minor must be positive, got {amount_minor}"))
    }
}

fn currency(code: String) -> Result<String, String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(format!(
            "currency must be three uppercase letters, got {code:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_charge_parses() {
        let body = br#"{"idempotency_key":"k","order_id":"o","customer_id":"c","amount_minor":5,"currency":"EUR"}"#;
        assert_eq!(ChargeRequest::parse(body).unwrap().amount_minor, 5);
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        let missing = ChargeRequest::parse(br#"{"idempotency_key":"k"}"#).unwrap_err();
        assert!(missing.contains("missing field"), "{missing}");
        let body = br#"{"idempotency_key":"k","order_id":"o","customer_id":"c","amount_minor":5,"currency":"eur"}"#;
        assert!(ChargeRequest::parse(body).unwrap_err().contains("currency"));
        let zero = br#"{"idempotency_key":"k","charge_id":"ch_1","amount_minor":0}"#;
        assert!(RefundRequest::parse(zero)
            .unwrap_err()
            .contains("amount_minor"));
    }
}
