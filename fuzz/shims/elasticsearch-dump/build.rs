include!("../expose.rs");

fn main() {
    expose("../../../tasks/elasticsearch-dump/src");
}
