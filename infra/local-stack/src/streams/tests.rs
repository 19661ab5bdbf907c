use super::*;
use crate::app::{FunctionSpec, IndexSpec, TableSpec};
use crate::dynamodb_local::DynamoDbLocal;
use crate::runtime::{fake, Logs};
use aws_sdk_dynamodb::types::AttributeValue as Av;

fn table() -> TableSpec {
    let _: Option<IndexSpec> = None;
    TableSpec {
        logical_id: "T".into(),
        name: "items".into(),
        attributes: vec![("pk".into(), "S".into()), ("sk".into(), "S".into())],
        key_schema: vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())],
        indexes: vec![],
        ttl_attribute: None,
        stream_view_type: Some("NEW_IMAGE".into()),
    }
}

fn source(max_retries: Option<u32>) -> StreamSourceSpec {
    StreamSourceSpec {
        function: "Sink".into(),
        event_id: "Items".into(),
        table: "T".into(),
        starting_position: "TRIM_HORIZON".into(),
        batch_size: 10,
        filters: vec![
            json!({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"sk": {"S": [{"prefix": "m#"}]}}}}),
        ],
        bisect: true,
        report_item_failures: true,
        max_retries,
        on_failure: Some("arn:aws:sqs:us-east-1:123456789012:failures".into()),
    }
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_poison_record_goes_to_the_on_failure_destination_and_the_rest_of_its_batch_is_processed()
{
    // GIVEN a table with a stream, and a function that writes down each record it processes
    // and reports the ones marked poison as failed
    let ddb = DynamoDbLocal::start().unwrap();
    let client = clients::dynamodb(&ddb.endpoint());
    let names = crate::tables::create_tables(&client, &[table()], "")
        .await
        .unwrap();
    let dir = fake::TempDir::new("streams");
    fake::function(
        &dir.0,
        "sink",
        "failed = []\n\
         for r in event['Records']:\n\
         \x20   img = r['dynamodb']['NewImage']\n\
         \x20   if 'poison' in img:\n\
         \x20       failed.append({'itemIdentifier': r['dynamodb']['SequenceNumber']})\n\
         \x20   else:\n\
         \x20       open(os.path.join(os.environ['SEEN_DIR'], img['sk']['S']), 'a').write('x')\n\
         result = {'batchItemFailures': failed}",
    );
    let invoker = Arc::new(Invoker::new(
        BTreeMap::from([(
            "Sink".to_string(),
            FunctionSpec {
                logical_id: "Sink".into(),
                binary: "sink".into(),
                timeout: Duration::from_secs(10),
                memory_mb: 128,
                env: BTreeMap::from([("SEEN_DIR".into(), dir.0.display().to_string())]),
            },
        )]),
        dir.0.clone(),
        BTreeMap::new(),
        Logs::Quiet,
    ));
    let pollers =
        StreamPollers::start(&[source(Some(1))], &names, &ddb.endpoint(), invoker.clone());
    // WHEN five items are written while the mapping is paused (so they meet in one batch): a
    // poison one among messages, and one the filter drops
    assert!(pollers.set_enabled("Sink", false));
    assert!(!pollers.set_enabled("Nope", false));
    for (sk, poison) in [
        ("m#1", false),
        ("m#2", true),
        ("m#3", false),
        ("x#4", false),
        ("m#5", false),
    ] {
        let mut put = client
            .put_item()
            .table_name("items")
            .item("pk", Av::S("p".into()))
            .item("sk", Av::S(sk.into()));
        if poison {
            put = put.item("poison", Av::Bool(true));
        }
        put.send().await.unwrap();
    }
    pollers.set_enabled("Sink", true);
    // THEN the poison record's invocation record reaches the destination
    let failure = until("the on-failure record", || {
        pollers.failures().first().cloned()
    })
    .await;
    assert_eq!(
        failure.destination,
        "arn:aws:sqs:us-east-1:123456789012:failures"
    );
    let info = &failure.body["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    let batches = pollers.batches();
    // AND the first invocation held the four records that passed the filter, in order
    let first: Vec<&str> = batches[0]
        .records
        .iter()
        .map(|r| r["dynamodb"]["NewImage"]["sk"]["S"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["m#1", "m#2", "m#3", "m#5"]);
    assert_eq!(batches[0].records[0]["eventSource"], "aws:dynamodb");
    assert_eq!(
        batches[0].records[0]["dynamodb"]["StreamViewType"],
        "NEW_IMAGE"
    );
    let poison_seq = batches[0].records[1]["dynamodb"]["SequenceNumber"].clone();
    assert_eq!(info["startSequenceNumber"], poison_seq);
    assert_eq!(info["endSequenceNumber"], poison_seq);
    assert_eq!(
        failure.body["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // (once alone, then its one retry)
    assert_eq!(failure.body["requestContext"]["approximateInvokeCount"], 2);
    assert!(info["streamArn"]
        .as_str()
        .unwrap()
        .contains(":table/items/stream/"));
    // AND every other message was processed, the filtered item never
    for sk in ["m#1", "m#3", "m#5"] {
        assert!(dir.0.join(sk).exists(), "{sk} was processed");
    }
    assert!(!dir.0.join("x#4").exists());
    assert_eq!(pollers.failures().len(), 1);
    // AND a later record flows on (the shard moved past the poison one)
    client
        .put_item()
        .table_name("items")
        .item("pk", Av::S("p".into()))
        .item("sk", Av::S("m#6".into()))
        .send()
        .await
        .unwrap();
    until("m#6", || dir.0.join("m#6").exists().then_some(())).await;
    drop(pollers);
    invoker.shutdown();
}

#[test]
fn partial_batch_responses_read_as_lambda_reads_them() {
    let batch: Vec<Value> = ["1", "2", "3"]
        .iter()
        .map(|s| json!({"dynamodb": {"SequenceNumber": s}}))
        .collect();
    assert_eq!(first_failed(&json!(null), &batch), None);
    assert_eq!(
        first_failed(&json!({"batchItemFailures": []}), &batch),
        None
    );
    assert_eq!(
        first_failed(
            &json!({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}),
            &batch
        ),
        Some(1)
    );
    // an identifier that names no record, or none at all, fails the whole batch
    assert_eq!(
        first_failed(
            &json!({"batchItemFailures": [{"itemIdentifier": "9"}]}),
            &batch
        ),
        Some(0)
    );
    assert_eq!(
        first_failed(&json!({"batchItemFailures": [{}]}), &batch),
        Some(0)
    );
    assert_eq!(
        first_failed(&json!({"batchItemFailures": "x"}), &batch),
        Some(0)
    );
}
