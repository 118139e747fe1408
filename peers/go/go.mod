// The Go peers of tools/duel. Standard library only: nothing to download,
// so it builds offline with Debian's golang-go (see build.sh).
module netloop/peers/go

go 1.19
