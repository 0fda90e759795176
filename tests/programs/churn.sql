-- churn.sql: fed to sqlite3 on standard input by tests/test_programs.c,
-- with and without LD_PRELOAD=libptm.so; the outputs must be identical.
PRAGMA journal_mode = DELETE;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -8000;
CREATE TABLE t (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, payload BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO t (id, grp, name, val, payload)
SELECT i, (i * 7919) % 1000, printf('name-%06d-%s', (i * 104729) % 100003, substr('abcdefghij', 1 + i % 10)),
       ((i * 2654435761) % 1000003) / 7.0, zeroblob(i % 200)
FROM n;
CREATE INDEX t_grp ON t (grp, val);
CREATE INDEX t_name ON t (name);
SELECT count(*), sum(grp), printf('%.3f', sum(val)), sum(length(payload)) FROM t;
SELECT grp, count(*), printf('%.3f', avg(val)), min(name), max(name) FROM t GROUP BY grp ORDER BY count(*) DESC, grp LIMIT 5;
SELECT name, id FROM t WHERE name LIKE 'name-0000%' ORDER BY name LIMIT 5;
SELECT count(DISTINCT substr(name, 6, 3)), group_concat(DISTINCT substr(name, 13)) FROM t;
SELECT a.grp % 10, count(*), sum(b.grp) FROM t AS a JOIN t AS b ON b.id = a.id * 2 GROUP BY 1 ORDER BY 1 LIMIT 4;
SELECT id, grp, printf('%.2f', val), rank() OVER (PARTITION BY grp ORDER BY val DESC) AS r
FROM t WHERE grp IN (1, 500, 999) ORDER BY grp, r LIMIT 9;
BEGIN;
UPDATE t SET name = upper(name), payload = zeroblob(300) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
COMMIT;
SELECT count(*), sum(length(payload)), max(name) FROM t;
CREATE TABLE s AS SELECT grp, group_concat(name, ',') AS names FROM (SELECT grp, name FROM t ORDER BY id) GROUP BY grp;
SELECT count(*), sum(length(names)), max(length(names)) FROM s;
VACUUM;
PRAGMA integrity_check;
SELECT 'done';
