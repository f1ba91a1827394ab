//! The real OpenLDAP the tests run against: people, groups and locks made
//! for one test and removed by it.

use std::collections::HashSet;

use ldap3::{LdapConnAsync, Mod};
use serde_json::{Value, json};

use crate::helpers::unique;

pub fn ldap_url() -> String {
    std::env::var("CLOSEGATE_TEST_LDAP").unwrap_or_else(|_| "ldap://127.0.0.1:3389".into())
}

pub async fn ldap_admin() -> ldap3::Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&ldap_url()).await.expect("LDAP is reachable");
    ldap3::drive!(conn);
    ldap.simple_bind("cn=admin,dc=closegate,dc=test", "admin")
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

/// The `systems` entry for the test directory, named `name`.
pub fn ldap_system(name: &str) -> Value {
    json!({ name: {
        "type": "ldap", "url": ldap_url(), "bind_dn": "cn=admin,dc=closegate,dc=test", "bind_password": { "value": "admin" },
        "user_base": "ou=people,dc=closegate,dc=test", "group_base": "ou=groups,dc=closegate,dc=test" } })
}

fn set(values: &[&str]) -> HashSet<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Entries one test created, deleted by [`Directory::clean`].
pub struct Directory {
    ldap: ldap3::Ldap,
    created: Vec<String>,
}

impl Directory {
    pub async fn open() -> Self {
        Self {
            ldap: ldap_admin().await,
            created: Vec::new(),
        }
    }

    pub fn person_dn(uid: &str) -> String {
        format!("uid={uid},ou=people,dc=closegate,dc=test")
    }

    /// A new person; returns the uid.
    pub async fn person(&mut self, prefix: &str) -> String {
        let uid = unique(prefix);
        let dn = Self::person_dn(&uid);
        let attrs = vec![
            ("objectClass".to_string(), set(&["inetOrgPerson"])),
            ("uid".to_string(), set(&[&uid])),
            ("cn".to_string(), set(&[&uid])),
            ("sn".to_string(), set(&["Test"])),
            ("mail".to_string(), set(&[&format!("{uid}@example.test")])),
        ];
        self.ldap.add(&dn, attrs).await.unwrap().success().unwrap();
        self.created.push(dn);
        uid
    }

    /// A new group with these members; returns its cn.
    pub async fn group(&mut self, prefix: &str, members: &[&str]) -> String {
        let cn = unique(prefix);
        let dn = format!("cn={cn},ou=groups,dc=closegate,dc=test");
        let members: Vec<String> = members.iter().map(|m| Self::person_dn(m)).collect();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let attrs = vec![
            ("objectClass".to_string(), set(&["groupOfNames"])),
            ("cn".to_string(), set(&[&cn])),
            ("member".to_string(), set(&members)),
        ];
        self.ldap.add(&dn, attrs).await.unwrap().success().unwrap();
        self.created.insert(0, dn);
        cn
    }

    /// Locks a person's account (ppolicy `pwdAccountLockedTime`).
    pub async fn lock(&mut self, uid: &str) {
        let lock = Mod::Add("pwdAccountLockedTime".to_string(), set(&["000001010000Z"]));
        self.ldap
            .modify(&Self::person_dn(uid), vec![lock])
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    /// Deletes everything this test created, groups first.
    pub async fn clean(mut self) {
        for dn in std::mem::take(&mut self.created) {
            let _ = self.ldap.delete(&dn).await;
        }
    }
}
