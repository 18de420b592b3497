use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    let s = txn.stats().unwrap();
    println!(
        "db: height {} allocated_pages {} leaf {} branch {} stored {} metadata {} fragmented {}",
        s.tree_height(),
        s.allocated_pages(),
        s.leaf_pages(),
        s.branch_pages(),
        s.stored_bytes(),
        s.metadata_bytes(),
        s.fragmented_bytes()
    );
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    drop(txn);
    let rtxn = db.begin_read().unwrap();
    for name in names {
        let t = rtxn
            .open_untyped_table(redb::TableDefinition::<&str, &[u8]>::new(&name))
            .unwrap();
        let st = t.stats().unwrap();
        println!(
            "{name}: len {} leaf {} branch {} stored {} metadata {} fragmented {}",
            t.len().unwrap(),
            st.leaf_pages(),
            st.branch_pages(),
            st.stored_bytes(),
            st.metadata_bytes(),
            st.fragmented_bytes()
        );
    }
}
