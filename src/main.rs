fn main() {
    print!("{}", hardened_csi_operator::crd::crd_yaml());
}
