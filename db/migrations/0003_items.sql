-- 0003: BEP 44 items the node was asked for or stored. See SCHEMA.md.

CREATE TABLE items (
    target           TEXT    NOT NULL PRIMARY KEY,
    mutable          INTEGER NOT NULL,
    seq              INTEGER,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    puts             INTEGER NOT NULL,
    gets             INTEGER NOT NULL,
    last_put         INTEGER,
    last_putter_id   TEXT,
    last_putter_ip   TEXT,
    last_putter_port INTEGER
) WITHOUT ROWID;
