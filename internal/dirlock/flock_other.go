//go:build !unix

package dirlock

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("locked")

// tryLock has no portable implementation here: fleetscan's state
// directories are locked on Unix only.
func tryLock(*os.File) error { return errors.New("directory locks need a Unix system") }

func unlock(*os.File) error { return nil }
