//! Unit tests of the fault plan and layer.

use super::layer::injected;
use super::*;
use opendal::Operator;

fn plan_with(spec: FaultSpec) -> Arc<FaultPlan> {
    let p = FaultPlan::new();
    p.arm(spec);
    p
}

/// Fires the plan at `point` on `key` the way the layer does for errors.
fn hit(p: &FaultPlan, point: Point, key: &str) -> bool {
    p.error_now(point, key).is_some()
}

#[test]
fn matches_by_prefix_and_operation() {
    let p = plan_with(FaultSpec::new(Fault::WriteError, "packs/").every_time());
    assert!(!hit(&p, Point::Write, "manifests/ab/x.manifest"));
    assert!(!hit(&p, Point::Close, "packs/ab/x.pack"), "other operation");
    assert!(!hit(&p, Point::Read, "packs/ab/x.pack"), "other operation");
    assert_eq!(p.matched(), 0, "only matching operations count");
    assert!(hit(&p, Point::Write, "packs/ab/x.pack"));
    assert!(
        !hit(&p, Point::Write, "xpacks/ab/x.pack"),
        "a prefix, not a substring"
    );
    assert_eq!((p.matched(), p.fired()), (1, 1));
}

#[test]
fn skips_then_fires_once() {
    let p = plan_with(FaultSpec::new(Fault::CloseError, "m/").skip(2));
    let got: Vec<bool> = (0..5).map(|_| hit(&p, Point::Close, "m/k")).collect();
    assert_eq!(got, [false, false, true, false, false]);
    assert_eq!((p.matched(), p.fired()), (5, 1));
}

#[test]
fn every_time_fires_after_the_skipped() {
    let p = plan_with(FaultSpec::new(Fault::WriteError, "").skip(1).every_time());
    let got: Vec<bool> = (0..4).map(|_| hit(&p, Point::Write, "any")).collect();
    assert_eq!(got, [false, true, true, true]);
    assert_eq!(p.fired(), 3);
}

#[test]
fn disarm_resets_and_voids_tickets_in_flight() {
    let p = plan_with(FaultSpec::new(Fault::ReadBitFlip { at: 0 }, ""));
    let t = p.ticket(Point::Read, "k").unwrap();
    assert_eq!(p.disarm(), 0);
    assert!(
        !p.live(&t) && !p.fire(&t),
        "a ticket from before disarm is void"
    );
    assert!(p.ticket(Point::Read, "k").is_none());
    assert_eq!((p.matched(), p.fired()), (0, 0));

    p.arm(FaultSpec::new(Fault::ShortRead, "").skip(1));
    assert!(p.ticket(Point::Read, "k").is_none(), "skip counts anew");
    let t = p.ticket(Point::Read, "k").unwrap();
    assert!(p.fire(&t));
    assert_eq!(p.disarm(), 1);
    // Re-arming also voids the previous arming's tickets.
    p.arm(FaultSpec::new(Fault::ShortRead, ""));
    let old = p.ticket(Point::Read, "k").unwrap();
    p.arm(FaultSpec::new(Fault::ShortRead, ""));
    assert!(!p.fire(&old));
    assert_eq!(p.fired(), 0);
}

#[test]
fn once_is_spent_by_the_first_ticket_to_fire() {
    let p = plan_with(FaultSpec::new(Fault::WriteBitFlip { at: 5 }, ""));
    // Two objects take tickets; only the first to reach its byte fires.
    let a = p.ticket(Point::Object, "a").unwrap();
    let b = p.ticket(Point::Object, "b").unwrap();
    assert!(p.fire(&b));
    assert!(!p.live(&a) && !p.fire(&a));
    assert!(p.ticket(Point::Object, "c").is_none());
    assert_eq!(p.fired(), 1);
}

#[test]
fn errors_are_permanent_unless_transient() {
    let t = |transient| Ticket {
        fault: Fault::WriteError,
        transient,
        generation: 0,
    };
    assert!(!injected(&t(false), "write", "k").is_temporary());
    assert!(injected(&t(true), "write", "k").is_temporary());
}

fn op(plan: &Arc<FaultPlan>) -> Operator {
    Operator::new(opendal::services::Memory::default())
        .unwrap()
        .layer(FaultLayer::new(Arc::clone(plan)))
}

#[tokio::test]
async fn write_and_close_errors_fail_the_write() {
    let plan = FaultPlan::new();
    let op = op(&plan);
    plan.arm(FaultSpec::new(Fault::WriteError, "p/"));
    assert!(op.write("p/a", vec![1u8; 10]).await.is_err());
    op.write("q/a", vec![1u8; 10]).await.unwrap();
    op.write("p/b", vec![2u8; 10]).await.unwrap();
    assert_eq!(plan.disarm(), 1);

    plan.arm(FaultSpec::new(Fault::CloseError, "p/"));
    let mut w = op.writer("p/c").await.unwrap();
    w.write(vec![3u8; 10]).await.unwrap();
    assert!(w.close().await.is_err());
    assert_eq!(plan.disarm(), 1);
    assert_eq!(op.read("p/b").await.unwrap().to_vec(), vec![2u8; 10]);
}

#[tokio::test]
async fn short_reads_return_half_the_range() {
    let plan = FaultPlan::new();
    let op = op(&plan);
    let data: Vec<u8> = (0..100u8).collect();
    op.write("p/a", data.clone()).await.unwrap();
    plan.arm(FaultSpec::new(Fault::ShortRead, "p/").every_time());
    let got = op.read_with("p/a").range(10..50).await.unwrap().to_vec();
    assert_eq!(got, data[10..30]);
    let got = op.read("p/a").await.unwrap().to_vec();
    assert!(got.len() < data.len() && got[..] == data[..got.len()]);
    assert_eq!(plan.disarm(), 2);
    assert_eq!(op.read("p/a").await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn bit_flips_on_read_leave_the_object_intact() {
    let plan = FaultPlan::new();
    let op = op(&plan);
    let data = vec![0u8; 64];
    op.write("p/a", data.clone()).await.unwrap();
    plan.arm(FaultSpec::new(Fault::ReadBitFlip { at: 7 }, "p/"));
    let got = op.read_with("p/a").range(8..40).await.unwrap().to_vec();
    let mut want = vec![0u8; 32];
    want[7] = 1;
    assert_eq!(got, want);
    assert_eq!(op.read("p/a").await.unwrap().to_vec(), data, "fired once");
    assert_eq!(plan.disarm(), 1);

    // Past the end of the read: its last byte.
    plan.arm(FaultSpec::new(Fault::ReadBitFlip { at: 1000 }, "p/"));
    let got = op.read_with("p/a").range(0..4).await.unwrap().to_vec();
    assert_eq!(got, [0, 0, 0, 1]);
}

#[tokio::test]
async fn bit_flips_on_write_corrupt_the_stored_object() {
    let plan = FaultPlan::new();
    let op = op(&plan);
    plan.arm(FaultSpec::new(Fault::WriteBitFlip { at: 12 }, "p/").skip(1));
    op.write("p/skipped", vec![0u8; 20]).await.unwrap();
    op.write("p/short", vec![0u8; 10]).await.unwrap();
    assert_eq!(
        plan.fired(),
        0,
        "an object ending before the byte is intact"
    );
    let mut w = op.writer("p/a").await.unwrap();
    w.write(vec![0u8; 10]).await.unwrap();
    w.write(vec![0u8; 10]).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(plan.disarm(), 1);
    let mut want = vec![0u8; 20];
    want[12] = 1;
    assert_eq!(op.read("p/a").await.unwrap().to_vec(), want);
    assert_eq!(op.read("p/skipped").await.unwrap().to_vec(), vec![0u8; 20]);
    assert_eq!(op.read("p/short").await.unwrap().to_vec(), vec![0u8; 10]);
}
