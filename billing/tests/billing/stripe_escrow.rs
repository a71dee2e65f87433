//! Escrow's provider calls (E1, E3, E6) through `StripeProvider` against
//! the fake Stripe API: a charge with automatic capture into the
//! platform's balance, transfers out of it tied to its charge (never more
//! than it has left), reversals of at most what was transferred, and a
//! refund of the rest.

use crate::common::{eur, provider};

use crate::fake_stripe::FakeStripe;
use parley_billing::{
    AccountRequest, ChargeRequest, IntentStatus, PaymentProvider, ProviderError, RefundRequest, TransferRequest,
};

fn charge(pm: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        amount: eur(10_000),
        payment_method: pm.into(),
        description: "Parley engagement eng_1".into(),
        metadata: vec![("engagement_id".into(), "eng_1".into())],
        idempotency_key: key.into(),
    }
}

fn transfer(amount: i64, destination: &str, source: &str, key: &str) -> TransferRequest {
    TransferRequest {
        amount: eur(amount),
        destination: destination.into(),
        source_transaction: source.into(),
        group: "eng_1".into(),
        idempotency_key: key.into(),
    }
}

fn code(e: ProviderError) -> String {
    match e {
        ProviderError::Rejected { code, .. } | ProviderError::Declined { decline_code: code, .. } => code,
        ProviderError::Transient(m) => panic!("transient: {m}"),
    }
}

#[tokio::test]
async fn escrow_charge_transfers_reversal_and_refund_as_stripe_checks_them() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let account = AccountRequest {
        consultant_id: "cal".into(),
        email: None,
        country: "DE".into(),
        idempotency_key: "account:cal".into(),
    };
    let acct = p.create_account(&account).await.unwrap().id;

    // The charge: captured at once, no destination.
    let funded = p.charge(&charge("pm_card_visa", "fund:eng_1")).await.unwrap();
    assert_eq!((funded.intent.status, funded.intent.amount_received), (IntentStatus::Succeeded, 10_000));
    let ch = funded.charge_id.clone().expect("a charge");
    let req = fake.requests().into_iter().find(|r| r.path == "/v1/payment_intents").unwrap();
    let form = |k: &str| req.form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(form("capture_method").as_deref(), Some("automatic"));
    assert_eq!(form("transfer_data[destination]"), None, "the money stays with the platform");
    assert_eq!(p.charge(&charge("pm_card_visa", "fund:eng_1")).await.unwrap(), funded, "a retry charges once");
    let declined = p.charge(&charge("pm_card_chargeDeclined", "fund:eng_2")).await.unwrap_err();
    assert_eq!(code(declined), "generic_decline");

    // Transfers out of the charge: never more than it has left.
    let t1 = p.transfer(&transfer(6_000, &acct, &ch, "release:ms_1")).await.unwrap();
    assert_eq!((t1.amount, t1.amount_reversed), (eur(6_000), 0));
    let again = p.transfer(&transfer(6_000, &acct, &ch, "release:ms_1")).await.unwrap();
    assert_eq!(again.id, t1.id, "the same key is the same transfer");
    let too_much = p.transfer(&transfer(4_001, &acct, &ch, "release:ms_2")).await.unwrap_err();
    assert_eq!(code(too_much), "balance_insufficient");
    let no_source = p.transfer(&transfer(100, &acct, "ch_nothing", "release:ms_3")).await.unwrap_err();
    assert_eq!(code(no_source), "resource_missing");
    let no_account = p.transfer(&transfer(100, "acct_nobody", &ch, "release:ms_4")).await.unwrap_err();
    assert_eq!(code(no_account), "resource_missing");

    // A reversal of at most what was transferred gives the balance back.
    let over = p.reverse_transfer(&t1.id, 6_001, "reverse:1").await.unwrap_err();
    assert_eq!(code(over), "parameter_invalid_integer");
    let back = p.reverse_transfer(&t1.id, 1_000, "reverse:2").await.unwrap();
    assert_eq!((back.amount, back.amount_reversed), (eur(6_000), 1_000));

    // A refund of part of the rest; then the balance left is exact.
    let refund = RefundRequest {
        intent_id: funded.intent.id.clone(),
        amount: 3_000,
        reverse_transfer: false,
        idempotency_key: "cancel:eng_1".into(),
    };
    assert_eq!(p.refund(&refund).await.unwrap().amount, eur(3_000));
    let last = p.transfer(&transfer(2_000, &acct, &ch, "release:ms_5")).await.unwrap();
    assert_eq!(last.amount, eur(2_000));
    let nothing = p.transfer(&transfer(1, &acct, &ch, "release:ms_6")).await.unwrap_err();
    assert_eq!(code(nothing), "balance_insufficient", "received 10 000 − refunded 3 000 − transferred 7 000");
}
