fn main() {
    println!("ferrite: the CLI lands with the FTL");
}
