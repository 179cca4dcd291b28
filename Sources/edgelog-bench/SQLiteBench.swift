// Contender b: SQLite through its C API. WAL journal, synchronous=FULL (every COMMIT is durable
// when it returns), one table with the record's fields, one prepared INSERT, and one transaction
// per batch of as many records as the store puts in one 32 KiB segment. Default WAL
// auto-checkpointing (1000 pages) is left on, as an application would have it.

import CSQLite
import EdgelogLinux
import Glibc

enum SQLiteBench {
    final class DB {
        let handle: OpaquePointer
        let path: String

        init(path: String) {
            var db: OpaquePointer?
            let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
            guard rc == SQLITE_OK, let db else { die("sqlite3_open_v2 \(path): rc \(rc)") }
            handle = db
            self.path = path
        }

        deinit { sqlite3_close_v2(handle) }

        var message: String { String(cString: sqlite3_errmsg(handle)) }

        func exec(_ sql: String) {
            let rc = sqlite3_exec(handle, sql, nil, nil, nil)
            guard rc == SQLITE_OK else { die("sqlite: \(sql): \(message)") }
        }

        func prepare(_ sql: String) -> OpaquePointer {
            var stmt: OpaquePointer?
            let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
            guard rc == SQLITE_OK, let stmt else { die("sqlite prepare \(sql): \(message)") }
            return stmt
        }

        /// First column of the first row, as text.
        func queryText(_ sql: String) -> String {
            let stmt = prepare(sql)
            defer { sqlite3_finalize(stmt) }
            guard sqlite3_step(stmt) == SQLITE_ROW, let t = sqlite3_column_text(stmt, 0) else { die("sqlite: \(sql): \(message)") }
            return String(cString: t)
        }

        /// Runs a prepared statement that returns no rows, and resets it.
        @inline(__always)
        func run(_ stmt: OpaquePointer, _ what: String) {
            let rc = sqlite3_step(stmt)
            guard rc == SQLITE_DONE else { die("sqlite \(what): rc \(rc): \(message)") }
            sqlite3_reset(stmt)
        }
    }

    static var version: String { String(cString: sqlite3_libversion()) }
}

final class SQLiteContender: Contender {
    let name = "sqlite"
    let path: String
    let db: SQLiteBench.DB
    let insert: OpaquePointer
    let begin: OpaquePointer
    let commit: OpaquePointer
    let bytes = RecordBytes()
    private var batchSize = 0
    var note = ""

    init(path: String) {
        self.path = path
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
        db = SQLiteBench.DB(path: path)
        let mode = db.queryText("PRAGMA journal_mode=WAL")
        guard mode == "wal" else { die("sqlite refused WAL mode (got \(mode))") }
        db.exec("PRAGMA synchronous=FULL")
        let sync = db.queryText("PRAGMA synchronous")
        guard sync == "2" else { die("sqlite synchronous is \(sync), expected 2 (FULL)") }
        db.exec("CREATE TABLE records (source TEXT, seq INTEGER, mono INTEGER, wall INTEGER, boot INTEGER, payload BLOB)")
        insert = db.prepare("INSERT INTO records (source, seq, mono, wall, boot, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        begin = db.prepare("BEGIN")
        commit = db.prepare("COMMIT")
    }

    func batch(_ range: Range<Int>, index: Int) -> UInt64 {
        batchSize = max(batchSize, range.count)
        let sourcePtr = UnsafeRawPointer(bytes.source.baseAddress!).assumingMemoryBound(to: CChar.self)
        let sourceLen = Int32(bytes.source.count)
        let payloadPtr = UnsafeRawPointer(bytes.payload.baseAddress!)
        let payloadLen = Int32(bytes.payload.count)
        db.run(begin, "BEGIN")
        for i in range {
            bytes.setNumber(i)
            let time = SystemClock.now()
            // SQLITE_STATIC (nil): the bytes stay valid until the statement is reset.
            sqlite3_bind_text(insert, 1, sourcePtr, sourceLen, nil)
            sqlite3_bind_int64(insert, 2, Int64(i + 1))
            sqlite3_bind_int64(insert, 3, Int64(i + 1))
            sqlite3_bind_int64(insert, 4, time.wallNs)
            sqlite3_bind_int64(insert, 5, time.bootNs)
            sqlite3_bind_blob(insert, 6, payloadPtr, payloadLen, nil)
            db.run(insert, "INSERT")
        }
        let t0 = monoNs()
        db.run(commit, "COMMIT")
        return monoNs() &- t0
    }

    func finish(records: Int) {
        sqlite3_finalize(insert)
        sqlite3_finalize(begin)
        sqlite3_finalize(commit)
        let stored = db.queryText("SELECT count(*) FROM records")
        guard stored == String(records) else { die("sqlite holds \(stored) rows, expected \(records)") }
        let walBytes = Machine.fileSize(path + "-wal") ?? 0
        let dbBytes = Machine.fileSize(path) ?? 0
        note = "WAL, synchronous=FULL, \(batchSize) rows/transaction, latency = COMMIT step, "
            + "default auto-checkpoint; db \(dbBytes / 1024) KiB, wal \(walBytes / 1024) KiB"
    }
}
