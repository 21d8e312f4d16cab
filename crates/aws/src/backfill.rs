//! The back-fill's state machine (Step Functions): start an execution, follow it and its Distributed Map
//! run, and name the items that failed. What the items are and how their partials are merged is the
//! CLI's business; this module only speaks to Step Functions.

use aws_config::SdkConfig;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::ExecutionStatus;
use tokenwatch_core::ports::PortError;

use crate::error::from_sdk;

/// Step Functions, for back-fills.
#[derive(Clone, Debug)]
pub struct StateMachines {
    client: Client,
}

/// Where an execution stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Execution {
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`, ...
    pub status: String,
    /// The error of a failed execution.
    pub error: Option<String>,
    /// Its cause.
    pub cause: Option<String>,
}

impl Execution {
    /// Still running (or about to).
    pub fn running(&self) -> bool {
        matches!(self.status.as_str(), "RUNNING" | "PENDING_REDRIVE")
    }
}

/// The items of a Distributed Map run, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemCounts {
    /// Items of the run.
    pub total: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Failed, timed out or aborted.
    pub failed: i64,
    /// Child executions that succeeded: batches, each of which wrote one partial.
    pub batches_succeeded: i64,
}

/// An item (a child execution of the map run) that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedItem {
    /// Its input (the keys it was to read).
    pub input: String,
    /// The error it ended with.
    pub error: String,
    /// Its cause.
    pub cause: String,
}

impl StateMachines {
    /// The client of `sdk`'s region.
    pub fn new(sdk: &SdkConfig) -> StateMachines {
        StateMachines {
            client: Client::new(sdk),
        }
    }

    /// Over an existing client (tests give a mocked one).
    pub fn from_client(client: Client) -> StateMachines {
        StateMachines { client }
    }

    /// Starts `state_machine` as execution `name` with `input`; returns the execution's ARN.
    pub async fn start(&self, state_machine: &str, name: &str, input: String) -> Result<String, PortError> {
        let out = self
            .client
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input)
            .send()
            .await
            .map_err(|e| from_sdk("states:StartExecution", e))?;
        Ok(out.execution_arn)
    }

    /// The execution's status.
    pub async fn execution(&self, execution: &str) -> Result<Execution, PortError> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .map_err(|e| from_sdk("states:DescribeExecution", e))?;
        Ok(Execution {
            status: out.status.as_str().to_owned(),
            error: out.error,
            cause: out.cause,
        })
    }

    /// The execution's map run, once it has started one.
    pub async fn map_run(&self, execution: &str) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .list_map_runs()
            .execution_arn(execution)
            .send()
            .await
            .map_err(|e| from_sdk("states:ListMapRuns", e))?;
        Ok(out.map_runs.into_iter().next().map(|r| r.map_run_arn))
    }

    /// The map run's items by state.
    pub async fn items(&self, map_run: &str) -> Result<ItemCounts, PortError> {
        let out = self
            .client
            .describe_map_run()
            .map_run_arn(map_run)
            .send()
            .await
            .map_err(|e| from_sdk("states:DescribeMapRun", e))?;
        let mut counts = out
            .item_counts
            .map(|c| ItemCounts {
                total: c.total,
                succeeded: c.succeeded,
                failed: c.failed + c.timed_out + c.aborted,
                batches_succeeded: 0,
            })
            .unwrap_or_default();
        counts.batches_succeeded = out.execution_counts.map_or(0, |c| c.succeeded);
        Ok(counts)
    }

    /// The map run's items that failed, timed out or were aborted, each with its input and error
    /// (one `DescribeExecution` each: failures are expected to be few).
    pub async fn failed_items(&self, map_run: &str) -> Result<Vec<FailedItem>, PortError> {
        let mut failed = Vec::new();
        for status in [
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
        ] {
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_executions()
                    .map_run_arn(map_run)
                    .status_filter(status.clone())
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| from_sdk("states:ListExecutions", e))?;
                for item in page.executions() {
                    let out = self
                        .client
                        .describe_execution()
                        .execution_arn(item.execution_arn())
                        .send()
                        .await
                        .map_err(|e| from_sdk("states:DescribeExecution", e))?;
                    failed.push(FailedItem {
                        input: out.input.unwrap_or_default(),
                        error: out.error.unwrap_or_else(|| status.as_str().to_owned()),
                        cause: out.cause.unwrap_or_default(),
                    });
                }
                match page.next_token() {
                    Some(next) => token = Some(next.to_owned()),
                    None => break,
                }
            }
        }
        Ok(failed)
    }

    /// Stops the execution (a back-fill the CLI gave up waiting for).
    pub async fn stop(&self, execution: &str, cause: &str) -> Result<(), PortError> {
        self.client
            .stop_execution()
            .execution_arn(execution)
            .cause(cause)
            .send()
            .await
            .map_err(|e| from_sdk("states:StopExecution", e))?;
        Ok(())
    }
}
