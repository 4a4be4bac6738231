//! The floor again, with the allocator tollgate's binary uses (mimalloc):
//! the same proxy as pingora_bare.rs, so instructions.sh can say how much
//! of tollgate's count against the floor is the allocator's and how much
//! is tollgate's own work.

#[global_allocator]
static ALLOCATOR: tollgate::alloc::Mimalloc = tollgate::alloc::Mimalloc;

#[path = "pingora_bare.rs"]
mod bare;

fn main() {
    bare::main()
}
