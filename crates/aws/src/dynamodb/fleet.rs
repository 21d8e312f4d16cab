//! A fleet's incident ([`tokenwatch_core::fleet`]) in the state table: one item per workload, its
//! document as JSON and a version that every write checks, so that members of one fleet writing at once
//! never lose each other's count (the detector reads again and retries on a conflict).

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use tokenwatch_core::fleet::Fleet;
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use super::DynamoStore;
use super::item::{DAY, EXPIRES_AT, PK, key, n, s};
use crate::error::from_sdk;

/// The item's sort key, beside a group's `STATE`.
pub(crate) const FLEET_SK: &str = "FLEET";
const DOC: &str = "doc";
const VERSION: &str = "ver";
/// A fleet's incident outlives its members' cool-down by far, and is gone within the month.
const FLEET_TTL: Epoch = 30 * DAY;

pub(crate) fn fleet_pk(fleet: &str) -> String {
    format!("FLEET#{fleet}")
}

impl DynamoStore {
    pub(super) async fn load_fleet_item(&self, fleet: &str) -> Result<Option<(Fleet, u64)>, PortError> {
        let Some(item) = self.get(fleet_pk(fleet), FLEET_SK).await? else {
            return Ok(None);
        };
        let version = item
            .get(VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // A document this version cannot read (written by a newer one, edited by hand) reads as a fleet
        // incident that is over: the next member opens a new one over it, version-checked as ever.
        let doc = item
            .get(DOC)
            .and_then(|v| v.as_s().ok())
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        Ok(Some((doc, version)))
    }

    pub(super) async fn save_fleet_item(
        &self,
        fleet: &str,
        doc: &Fleet,
        expected: Option<u64>,
        now: Epoch,
    ) -> Result<bool, PortError> {
        let json =
            serde_json::to_string(doc).map_err(|e| PortError::permanent(format!("fleet document: {e}")))?;
        let condition = match expected {
            None => "attribute_not_exists(#pk)",
            Some(_) => "#ver = :expected",
        };
        self.count();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(fleet_pk(fleet), FLEET_SK)))
            .update_expression("SET #doc = :doc, #ver = :ver, #exp = :exp")
            .condition_expression(condition)
            .expression_attribute_names("#doc", DOC)
            .expression_attribute_names("#ver", VERSION)
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":doc", s(json))
            .expression_attribute_values(":ver", n(expected.map_or(1, |v| v + 1)))
            .expression_attribute_values(":exp", n(now + FLEET_TTL));
        update = match expected {
            None => update.expression_attribute_names("#pk", PK),
            Some(v) => update.expression_attribute_values(":expected", n(v)),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(from_sdk("dynamodb:UpdateItem", err)),
            },
        }
    }
}
