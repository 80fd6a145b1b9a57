// Command sleeper is the process of the Docker test image: it prints who it
// is, sleeps $SLEEP seconds and exits with $EXIT; SIGTERM ends it at once
// with 143, as a shell would.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	fmt.Printf("hello from %s %s of %s\n", os.Getenv("RM_ROLE"), os.Getenv("RM_INSTANCE_INDEX"), os.Getenv("RM_JOB_ID"))
	secs, _ := strconv.ParseFloat(os.Getenv("SLEEP"), 64)
	code, _ := strconv.Atoi(os.Getenv("EXIT"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))):
		os.Exit(code)
	case s := <-sig:
		os.Exit(128 + int(s.(syscall.Signal)))
	}
}
