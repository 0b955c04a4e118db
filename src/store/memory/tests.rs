use super::*;

#[test]
fn debug_shows_the_namespace_only() {
    let store = MemoryStore::new().with_user_key(UserKey::try_from(&[0xAB; 32][..]).unwrap());
    assert_eq!(
        format!("{store:?}"),
        r#"MemoryStore { namespace: "session", .. }"#
    );
}
