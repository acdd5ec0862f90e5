include!("../expose.rs");

fn main() {
    expose("../../../tests/elasticsearch-server/src");
}
