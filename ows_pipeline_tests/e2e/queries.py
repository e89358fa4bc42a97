"""GraphQL queries the end-to-end tests send to the webserver."""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime jobName tags { key value } runConfigYaml }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message causes { message } } }
        ... on RunFailureEvent { error { message } }
        ... on MaterializationEvent {
          assetKey { path }
          metadataEntries { label description
            ... on IntMetadataEntry { intValue }
            ... on FloatMetadataEntry { floatValue }
            ... on TextMetadataEntry { text }
            ... on MarkdownMetadataEntry { mdStr }
            ... on PathMetadataEntry { path }
            ... on JsonMetadataEntry { jsonString }
            ... on UrlMetadataEntry { url }
          }
        }
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName success severity assetKey { path }
            metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } }
        }
      }
    }
  }
}
"""

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    owners { ... on UserAssetOwner { email } ... on TeamAssetOwner { team } }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""

ASSET_LATEST = """
query Asset($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId partition
        metadataEntries { label
          ... on IntMetadataEntry { intValue }
          ... on PathMetadataEntry { path }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""

SENSORS = """
query Sensors($selector: RepositorySelector!) {
  sensorsOrError(repositorySelector: $selector) {
    __typename
    ... on Sensors { results { name sensorState { status } } }
  }
}
"""


def all_run_events(stack, run_id: str) -> list[dict]:
    """Every event of a run, following the cursor."""
    events, cursor = [], None
    while True:
        data = stack.graphql(RUN_EVENTS, {"runId": run_id, "after": cursor})["logsForRun"]
        assert data["__typename"] == "EventConnection", data
        events.extend(data["events"])
        cursor = data["cursor"]
        if not data["hasMore"]:
            return events


def run_record(stack, run_id: str) -> dict:
    data = stack.graphql(RUN, {"runId": run_id})["runOrError"]
    assert data["__typename"] == "Run", data
    data["tags"] = {t["key"]: t["value"] for t in data["tags"]}
    return data
