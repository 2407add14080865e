//go:build !unix

package devstack

// lockDataDir takes no lock on systems without flock: there, two dev
// stacks on one data folder are not detected.
func lockDataDir(dir, lockPath string) (release func(), err error) {
	return func() {}, nil
}
