use benches::runtime::{Op, Ours};
fn main() {
    let n: u64 = std::env::args().nth(1).map_or(20000, |s| s.parse().unwrap());
    let ours = Ours::new(2);
    ours.run(Op::Region, 1000);
    let d = ours.run(Op::Region, n);
    println!("{:?} per region", d / n as u32);
}
