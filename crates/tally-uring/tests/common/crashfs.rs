//! `crashfs`: an in-memory FUSE file system that logs every mutating request in the order
//! its (single) daemon thread handles it, and a power-loss model that turns any prefix of
//! that log into the file trees a power loss at that point may leave on disk.
//!
//! The file system is mounted with the kernel's default write-through caching (no
//! `FUSE_WRITEBACK_CACHE`): every `write` reaches the daemon before the system call (or
//! io_uring operation) completes, and so does every `fsync`, `fdatasync` and directory
//! `fsync`. The log is therefore the exact order in which the journal's writes, syncs and
//! directory operations happened, and the op counter read after a call returned covers
//! every request that call made. Requests it does not implement (locks, xattrs, `lseek`,
//! `copy_file_range`, `access`, links) answer `ENOSYS`: the kernel then does `flock` and
//! POSIX locks locally (`FUSE_FLOCK_LOCKS`/`FUSE_POSIX_LOCKS` are not negotiated), seeks
//! locally and copies by read + write.
//!
//! # Crash model
//! Conservative: what a portable program must survive on ext4 (any `data=` mode) or XFS.
//! * A file's data and size become durable only at an `fsync` or `fdatasync` of that file;
//!   either makes all of its pending data and its size durable. (Nothing else does: not a
//!   later `fsync` of its directory, not an `fsync` of another file.)
//! * A directory's entries (create, mkdir, rename, unlink) become durable only at an
//!   `fsync` of that directory. Directory operations persist in order: a crash keeps a
//!   random *prefix* of each directory's pending entry operations, and a rename within a
//!   directory is atomic (a rename across directories is an unlink from one and a link into
//!   the other, each kept or lost on its own; the journal never does one).
//! * Pending (unsynced) data writes: a crash keeps a random *subset* of them, each either
//!   whole or torn at 512-byte sector granularity (a random subset of the sectors it
//!   touches), applied in log order over the durable content. In some images a sector a
//!   torn write did not complete holds random bytes instead (a device whose sector writes
//!   are not atomic); synced data is never damaged. A file's size after a crash
//!   is its durable size or one of the sizes it had since its last sync (extending writes,
//!   `fallocate`, truncation); bytes never written read as zeros.
//! * An inode that no surviving directory entry names is gone.
//!
//! Syncs are credited as the kernel orders them: FUSE's `fsync` holds the inode lock that
//! buffered writes take (`fuse_fsync`), so the daemon sees a sync after every write that
//! got the lock before it and before any write that did not. A sync is therefore credited
//! with the writes that completed before it started flushing, as on a local file system;
//! with io_uring that can include a write issued after the sync was submitted but run
//! before the worker got to the sync, which POSIX does not promise. A program relying on
//! that is caught only in runs where the sync gets the lock first.
//!
//! [`Model`] replays a log prefix; [`Model::materialise`] writes one random crash image of
//! it into an ordinary directory (recovery only needs the files).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "test code: sizes are far below the limits of the casts"
)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

/// The sector size at which an unsynced write may be torn.
pub const SECTOR: u64 = 512;

const ROOT: u64 = 1;
/// Attribute and entry cache lifetime. Every change goes through this mount, so the
/// kernel's cached attributes stay right (it updates the size itself on writes).
const TTL: Duration = Duration::from_secs(1);

/// One mutating request, as the daemon applied it.
#[derive(Debug, Clone)]
pub enum Op {
    /// `write` of `data` at `off`.
    Write {
        /// Inode.
        ino: u64,
        /// Offset.
        off: u64,
        /// Bytes written.
        data: Vec<u8>,
    },
    /// `truncate` / `setattr` of the size.
    SetSize {
        /// Inode.
        ino: u64,
        /// New size.
        size: u64,
    },
    /// `fallocate` (mode 0 or `FALLOC_FL_KEEP_SIZE`).
    Fallocate {
        /// Inode.
        ino: u64,
        /// Offset.
        off: u64,
        /// Length.
        len: u64,
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
    /// `create`, `mknod` or `mkdir` of `name` in `parent`.
    Create {
        /// Directory.
        parent: u64,
        /// Entry name.
        name: OsString,
        /// The new inode.
        ino: u64,
        /// A directory (`mkdir`).
        dir: bool,
    },
    /// `rename` (replacing any target).
    Rename {
        /// Source directory.
        parent: u64,
        /// Source name.
        name: OsString,
        /// Target directory.
        newparent: u64,
        /// Target name.
        newname: OsString,
        /// The renamed inode.
        ino: u64,
    },
    /// `unlink` or `rmdir`.
    Unlink {
        /// Directory.
        parent: u64,
        /// Entry name.
        name: OsString,
    },
    /// `fsync` (or `fdatasync`) of a file.
    Fsync {
        /// Inode.
        ino: u64,
        /// `fdatasync`.
        datasync: bool,
    },
    /// `fsync` of a directory.
    FsyncDir {
        /// Inode.
        ino: u64,
    },
}

impl Op {
    /// A sync (file or directory).
    pub fn is_sync(&self) -> bool {
        matches!(self, Self::Fsync { .. } | Self::FsyncDir { .. })
    }
}

enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
}

/// A fault the daemon answers the next `write` request with (see
/// [`Handle::inject_write_faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Write only the first this many bytes (at least 1, less than asked) and report that
    /// count: a short write.
    Short(u32),
    /// Write nothing and fail with this errno.
    Fail(i32),
}

/// The daemon's live state: the file tree as the running program sees it, and the log.
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    log: Vec<Op>,
    /// Faults for the next `write` requests, in order.
    write_faults: std::collections::VecDeque<WriteFault>,
    /// Errnos for the next `fsyncdir` requests, in order.
    fsyncdir_faults: std::collections::VecDeque<i32>,
    /// Answer `fallocate` with `EOPNOTSUPP`, as file systems without it do.
    no_fallocate: bool,
}

impl State {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(BTreeMap::new()));
        Self {
            nodes,
            next_ino: ROOT + 1,
            log: Vec::new(),
            write_faults: std::collections::VecDeque::new(),
            fsyncdir_faults: std::collections::VecDeque::new(),
            no_fallocate: false,
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match self.nodes.get(&ino)? {
            Node::File(d) => (FileType::RegularFile, d.len() as u64, 0o644, 1),
            Node::Dir(_) => (FileType::Directory, 0, 0o755, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir(&self, ino: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(d)) => Ok(d),
            Some(Node::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// Applies a checked operation to the live tree and logs it.
    fn apply(&mut self, op: Op) {
        match &op {
            Op::Write { ino, off, data } => {
                let f = self.file_mut(*ino).unwrap();
                write_at(f, *off, data);
            }
            Op::SetSize { ino, size } => self.file_mut(*ino).unwrap().resize(*size as usize, 0),
            Op::Fallocate {
                ino,
                off,
                len,
                keep_size,
            } => {
                let f = self.file_mut(*ino).unwrap();
                if !keep_size && (off + len) as usize > f.len() {
                    f.resize((off + len) as usize, 0);
                }
            }
            Op::Create {
                parent,
                name,
                ino,
                dir,
            } => {
                let node = if *dir {
                    Node::Dir(BTreeMap::new())
                } else {
                    Node::File(Vec::new())
                };
                self.nodes.insert(*ino, node);
                if let Some(Node::Dir(d)) = self.nodes.get_mut(parent) {
                    d.insert(name.clone(), *ino);
                }
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                ino,
            } => {
                if let Some(Node::Dir(d)) = self.nodes.get_mut(parent) {
                    d.remove(name);
                }
                if let Some(Node::Dir(d)) = self.nodes.get_mut(newparent) {
                    d.insert(newname.clone(), *ino);
                }
            }
            Op::Unlink { parent, name } => {
                if let Some(Node::Dir(d)) = self.nodes.get_mut(parent) {
                    d.remove(name);
                }
            }
            Op::Fsync { .. } | Op::FsyncDir { .. } => {}
        }
        self.log.push(op);
    }

    fn new_node(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<u64, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.apply(Op::Create {
            parent,
            name: name.to_os_string(),
            ino,
            dir,
        });
        Ok(ino)
    }

    /// Copies the tree under `dir` into directory `ino` as durable state: every file is
    /// created, written and synced, every directory synced after its entries.
    fn seed_from(&mut self, ino: u64, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name();
            if e.file_type().unwrap().is_dir() {
                let child = self.new_node(ino, &name, true).unwrap();
                self.seed_from(child, &e.path());
            } else {
                let child = self.new_node(ino, &name, false).unwrap();
                let data = std::fs::read(e.path()).unwrap();
                if !data.is_empty() {
                    self.apply(Op::Write {
                        ino: child,
                        off: 0,
                        data,
                    });
                }
                self.apply(Op::Fsync {
                    ino: child,
                    datasync: false,
                });
            }
        }
        self.apply(Op::FsyncDir { ino });
    }

    fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno::ENOENT)?;
        match (self.nodes.get(&ino), want_dir) {
            (Some(Node::Dir(_)), false) => return Err(Errno::EISDIR),
            (Some(Node::File(_)), true) => return Err(Errno::ENOTDIR),
            (Some(Node::Dir(d)), true) if !d.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.apply(Op::Unlink {
            parent,
            name: name.to_os_string(),
        });
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
    ) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno::ENOENT)?;
        let target = self.dir(newparent)?.get(newname).copied();
        if target == Some(ino) {
            return Ok(());
        }
        if let Some(t) = target {
            match (self.nodes.get(&ino), self.nodes.get(&t)) {
                (Some(Node::File(_)), Some(Node::Dir(_))) => return Err(Errno::EISDIR),
                (Some(Node::Dir(_)), Some(Node::File(_))) => return Err(Errno::ENOTDIR),
                (_, Some(Node::Dir(d))) if !d.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.apply(Op::Rename {
            parent,
            name: name.to_os_string(),
            newparent,
            newname: newname.to_os_string(),
            ino,
        });
        Ok(())
    }
}

fn write_at(f: &mut Vec<u8>, off: u64, data: &[u8]) {
    let end = off as usize + data.len();
    if f.len() < end {
        f.resize(end, 0);
    }
    f[off as usize..end].copy_from_slice(data);
}

/// The FUSE daemon (one thread, so requests are handled and logged in one order).
struct CrashFs {
    state: Arc<Mutex<State>>,
}

impl CrashFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn entry_reply(st: &State, ino: u64, reply: ReplyEntry) {
    match st.attr(ino) {
        Some(a) => reply.entry(&TTL, &a, Generation(0)),
        None => reply.error(Errno::ENOENT),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "the signatures are fuser's Filesystem trait"
)]
impl Filesystem for CrashFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.state();
        match st.dir(parent.0).map(|d| d.get(name).copied()) {
            Ok(Some(ino)) => entry_reply(&st, ino, reply),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.state();
        if let Some(size) = size {
            if let Err(e) = st.file_mut(ino.0) {
                reply.error(e);
                return;
            }
            st.apply(Op::SetSize { ino: ino.0, size });
        }
        // Modes, owners and times are not modelled (the journal's recovery reads none).
        match st.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        let mut st = self.state();
        match st.new_node(parent.0, name, false) {
            Ok(ino) => entry_reply(&st, ino, reply),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.state();
        match st.new_node(parent.0, name, true) {
            Ok(ino) => entry_reply(&st, ino, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // `rename(2)` only (what `std::fs::rename` calls): no renameat2 flags.
        if !flags.is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        match self.state().rename(parent.0, name, newparent.0, newname) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // O_TRUNC on an existing file arrives as a setattr (no FUSE_ATOMIC_O_TRUNC).
        match self.state().nodes.get(&ino.0) {
            Some(Node::File(_)) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().nodes.get(&ino.0) {
            Some(Node::File(d)) => {
                let start = (offset as usize).min(d.len());
                let end = (start + size as usize).min(d.len());
                reply.data(&d[start..end]);
            }
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.state();
        if let Err(e) = st.file_mut(ino.0) {
            reply.error(e);
            return;
        }
        let data = match st.write_faults.pop_front() {
            None => data,
            Some(WriteFault::Short(n)) => &data[..(n as usize).clamp(1, data.len())],
            Some(WriteFault::Fail(errno)) => {
                reply.error(Errno::from_i32(errno));
                return;
            }
        };
        st.apply(Op::Write {
            ino: ino.0,
            off: offset,
            data: data.to_vec(),
        });
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2): makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state();
        if let Err(e) = st.file_mut(ino.0) {
            reply.error(e);
            return;
        }
        st.apply(Op::Fsync {
            ino: ino.0,
            datasync,
        });
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.state();
        let d = match st.dir(ino.0) {
            Ok(d) => d,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let dots = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        let entries = d.iter().map(|(name, &i)| {
            let kind = match st.nodes.get(&i) {
                Some(Node::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (i, kind, name.clone())
        });
        for (n, (i, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(i), n as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state();
        if let Err(e) = st.dir(ino.0) {
            reply.error(e);
            return;
        }
        // A failed directory sync makes nothing durable (and is not logged).
        if let Some(errno) = st.fsyncdir_faults.pop_front() {
            reply.error(Errno::from_i32(errno));
            return;
        }
        st.apply(Op::FsyncDir { ino: ino.0 });
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            reply.error(Errno::EPERM);
            return;
        }
        let mut st = self.state();
        // The kernel sends create for a name it believes absent; should it exist after all,
        // behave as open(2) would.
        let existing = st.dir(parent.0).map(|d| d.get(name).copied());
        let ino = match existing {
            Err(e) => {
                reply.error(e);
                return;
            }
            Ok(Some(_)) if flags & libc::O_EXCL != 0 => {
                reply.error(Errno::EEXIST);
                return;
            }
            Ok(Some(ino)) => {
                if st.file_mut(ino).is_err() {
                    reply.error(Errno::EISDIR);
                    return;
                }
                if flags & libc::O_TRUNC != 0 {
                    st.apply(Op::SetSize { ino, size: 0 });
                }
                ino
            }
            Ok(None) => match st.new_node(parent.0, name, false) {
                Ok(ino) => ino,
                Err(e) => {
                    reply.error(e);
                    return;
                }
            },
        };
        let attr = st.attr(ino).unwrap();
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(0),
            FopenFlags::empty(),
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state();
        // Plain preallocation only (punching or zeroing ranges is not modelled).
        if st.no_fallocate || (mode != 0 && mode != libc::FALLOC_FL_KEEP_SIZE) {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        if let Err(e) = st.file_mut(ino.0) {
            reply.error(e);
            return;
        }
        st.apply(Op::Fallocate {
            ino: ino.0,
            off: offset,
            len: length,
            keep_size: mode != 0,
        });
        reply.ok();
    }
}

/// The test's view of a mounted [`CrashFs`].
#[derive(Clone)]
pub struct Handle {
    state: Arc<Mutex<State>>,
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mutating requests handled so far (the length of the log).
    pub fn ops(&self) -> usize {
        self.state().log.len()
    }

    /// Answers the next `write` requests (of any file, in the order the daemon gets them)
    /// with `faults`, one each; later writes work again.
    pub fn inject_write_faults(&self, faults: &[WriteFault]) {
        self.state().write_faults.extend(faults.iter().copied());
    }

    /// Fails the next `fsyncdir` requests (of any directory, in the order the daemon gets
    /// them) with these errnos, one each; a failed one makes nothing durable. Later
    /// directory syncs work again.
    pub fn inject_fsyncdir_faults(&self, errnos: &[i32]) {
        self.state().fsyncdir_faults.extend(errnos.iter().copied());
    }

    /// Answers every `fallocate` from now on with `EOPNOTSUPP`, as a file system without
    /// it does (the kernel's FUSE client then stops asking for this mount).
    pub fn refuse_fallocate(&self) {
        self.state().no_fallocate = true;
    }

    /// Injected write faults not used yet.
    pub fn pending_write_faults(&self) -> usize {
        self.state().write_faults.len()
    }

    /// A copy of the log.
    pub fn log(&self) -> Vec<Op> {
        self.state().log.clone()
    }

    /// The files of directory `dir` (a path relative to the mount's root) in the live
    /// tree, each with up to its first `n` bytes.
    pub fn heads(&self, dir: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        let st = self.state();
        let mut ino = ROOT;
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            ino = match st.dir(ino).ok().and_then(|d| d.get(OsStr::new(part))) {
                Some(&i) => i,
                None => return Vec::new(),
            };
        }
        let Ok(d) = st.dir(ino) else {
            return Vec::new();
        };
        d.iter()
            .filter_map(|(name, i)| match st.nodes.get(i) {
                Some(Node::File(data)) => Some((
                    name.to_string_lossy().into_owned(),
                    data[..n.min(data.len())].to_vec(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// A mounted [`CrashFs`]; unmounts on drop (also while a failing test unwinds).
pub struct Mount {
    path: PathBuf,
    handle: Handle,
    session: Option<fuser::BackgroundSession>,
}

impl Mount {
    /// Mounts a fresh file system on the existing empty directory `path`: empty, or with
    /// a durable copy of the tree under `seed` (logged as creates, writes and syncs, so
    /// the log's first [`Handle::ops`] operations rebuild it).
    ///
    /// # Errors
    /// Why the kernel refused (no `/dev/fuse`, no permission to mount, ...).
    pub fn new(path: &Path, seed: Option<&Path>) -> std::io::Result<Self> {
        if !Path::new("/dev/fuse").exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "/dev/fuse is missing (kernel without FUSE, or a container without the device)",
            ));
        }
        let mut initial = State::new();
        if let Some(seed) = seed {
            initial.seed_from(ROOT, seed);
        }
        let state = Arc::new(Mutex::new(initial));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("crashfs".into()),
            fuser::MountOption::Subtype("crashfs".into()),
            fuser::MountOption::RW,
        ];
        config.n_threads = Some(1);
        let session = fuser::spawn_mount(
            CrashFs {
                state: Arc::clone(&state),
            },
            path,
            &config,
        )
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "mounting FUSE on {}: {e} (the direct mount(2) needs root or CAP_SYS_ADMIN; when it is refused, fuser falls back to the fusermount3 helper of the fuse3 package)",
                    path.display()
                ),
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            handle: Handle { state },
            session: Some(session),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The test's view of the daemon.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if session.umount_and_join().is_err() {
            // Still busy (a file left open by a failing test): detach it lazily so that
            // nothing can reach it any more; the daemon thread ends when the last file
            // closes.
            let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
            // umount2 only reads it.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// `SplitMix64`: a small seeded generator (the crash model and the workloads).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A directory's pending entry operation.
#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, u64),
    Unlink(OsString),
    Rename(OsString, OsString),
}

fn apply_dir_op(d: &mut BTreeMap<OsString, u64>, op: &DirOp) {
    match op {
        DirOp::Link(name, ino) => {
            d.insert(name.clone(), *ino);
        }
        DirOp::Unlink(name) => {
            d.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = d.remove(from) {
                d.insert(to.clone(), ino);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct FileModel {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(u64, Vec<u8>)>,
    /// Sizes the file had since the last sync.
    sizes: Vec<u64>,
}

#[derive(Debug, Default, Clone)]
struct DirModel {
    durable: BTreeMap<OsString, u64>,
    pending: Vec<DirOp>,
}

/// Which crash image to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// Only what was synced survives.
    DurableOnly,
    /// Everything survives (the live tree: what a process kill leaves).
    Everything,
    /// A random image allowed by the crash model.
    Random,
}

/// The durable and pending state after a prefix of the log.
#[derive(Debug, Default, Clone)]
pub struct Model {
    files: HashMap<u64, FileModel>,
    dirs: HashMap<u64, DirModel>,
    applied: usize,
}

impl Model {
    /// The empty file system (just the root directory).
    pub fn new() -> Self {
        let mut m = Self::default();
        m.dirs.insert(ROOT, DirModel::default());
        m
    }

    /// Log operations applied so far.
    pub fn applied(&self) -> usize {
        self.applied
    }

    /// Applies the next operation of the log.
    pub fn apply(&mut self, op: &Op) {
        self.applied += 1;
        match op {
            Op::Write { ino, off, data } => {
                let f = self.files.get_mut(ino).unwrap();
                write_at(&mut f.current, *off, data);
                f.pending.push((*off, data.clone()));
                f.sizes.push(f.current.len() as u64);
            }
            Op::SetSize { ino, size } => {
                let f = self.files.get_mut(ino).unwrap();
                f.current.resize(*size as usize, 0);
                f.sizes.push(*size);
            }
            Op::Fallocate {
                ino,
                off,
                len,
                keep_size,
            } => {
                let f = self.files.get_mut(ino).unwrap();
                if !keep_size && (off + len) as usize > f.current.len() {
                    f.current.resize((off + len) as usize, 0);
                    f.sizes.push(f.current.len() as u64);
                }
            }
            Op::Create {
                parent,
                name,
                ino,
                dir,
            } => {
                if *dir {
                    self.dirs.insert(*ino, DirModel::default());
                } else {
                    self.files.insert(*ino, FileModel::default());
                }
                let p = self.dirs.get_mut(parent).unwrap();
                p.pending.push(DirOp::Link(name.clone(), *ino));
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                ino,
            } => {
                if parent == newparent {
                    let p = self.dirs.get_mut(parent).unwrap();
                    p.pending.push(DirOp::Rename(name.clone(), newname.clone()));
                } else {
                    let p = self.dirs.get_mut(parent).unwrap();
                    p.pending.push(DirOp::Unlink(name.clone()));
                    let n = self.dirs.get_mut(newparent).unwrap();
                    n.pending.push(DirOp::Link(newname.clone(), *ino));
                }
            }
            Op::Unlink { parent, name } => {
                let p = self.dirs.get_mut(parent).unwrap();
                p.pending.push(DirOp::Unlink(name.clone()));
            }
            Op::Fsync { ino, .. } => {
                let f = self.files.get_mut(ino).unwrap();
                f.durable = f.current.clone();
                f.pending.clear();
                f.sizes.clear();
            }
            Op::FsyncDir { ino } => {
                let d = self.dirs.get_mut(ino).unwrap();
                for op in std::mem::take(&mut d.pending) {
                    apply_dir_op(&mut d.durable, &op);
                }
            }
        }
    }

    /// The entries of directory `ino` after a crash.
    fn crash_dir(&self, ino: u64, kind: CrashKind, rng: &mut Rng) -> BTreeMap<OsString, u64> {
        let d = &self.dirs[&ino];
        let keep = match kind {
            CrashKind::DurableOnly => 0,
            CrashKind::Everything => d.pending.len(),
            CrashKind::Random => rng.below(d.pending.len() as u64 + 1) as usize,
        };
        let mut entries = d.durable.clone();
        for op in &d.pending[..keep] {
            apply_dir_op(&mut entries, op);
        }
        entries
    }

    /// The content of file `ino` after a crash.
    fn crash_file(&self, ino: u64, kind: CrashKind, rng: &mut Rng) -> Vec<u8> {
        let f = &self.files[&ino];
        match kind {
            CrashKind::DurableOnly => return f.durable.clone(),
            CrashKind::Everything => return f.current.clone(),
            CrashKind::Random => {}
        }
        // Per image, how likely a pending write is to survive and to be torn.
        let keep_pct = [10, 50, 90][rng.below(3) as usize];
        let tear_pct = [0, 30, 70][rng.below(3) as usize];
        // In some images a sector a torn write did not complete holds random bytes (a
        // device whose sector writes are not atomic).
        let garbage = rng.percent(30);
        let mut img = f.durable.clone();
        for (off, data) in &f.pending {
            if !rng.percent(keep_pct) {
                continue;
            }
            if !rng.percent(tear_pct) {
                write_at(&mut img, *off, data);
                continue;
            }
            let end = off + data.len() as u64;
            let mut s = off / SECTOR * SECTOR;
            while s < end {
                let (a, b) = (s.max(*off), (s + SECTOR).min(end));
                if rng.percent(50) {
                    write_at(&mut img, a, &data[(a - off) as usize..(b - off) as usize]);
                } else if garbage && rng.percent(50) {
                    let noise: Vec<u8> = (a..b).map(|_| rng.next_u64() as u8).collect();
                    write_at(&mut img, a, &noise);
                }
                s += SECTOR;
            }
        }
        let size = match rng.below(f.sizes.len() as u64 + 1) as usize {
            0 => f.durable.len(),
            i => f.sizes[i - 1] as usize,
        };
        img.resize(size, 0);
        img
    }

    /// Writes one crash image of the file system into the empty directory `dest`.
    pub fn materialise(&self, kind: CrashKind, rng: &mut Rng, dest: &Path) {
        let mut done: HashMap<u64, PathBuf> = HashMap::new();
        let mut stack = vec![(ROOT, dest.to_path_buf())];
        while let Some((dir, path)) = stack.pop() {
            for (name, ino) in self.crash_dir(dir, kind, rng) {
                let p = path.join(&name);
                if self.dirs.contains_key(&ino) {
                    std::fs::create_dir(&p).unwrap();
                    stack.push((ino, p));
                } else if let Some(first) = done.get(&ino) {
                    std::fs::hard_link(first, &p).unwrap();
                } else {
                    std::fs::write(&p, self.crash_file(ino, kind, rng)).unwrap();
                    done.insert(ino, p);
                }
            }
        }
    }
}
