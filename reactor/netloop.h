// The callback API in one include: Engine, EventHandler, Conn, Options.
#ifndef NETLOOP_REACTOR_NETLOOP_H_
#define NETLOOP_REACTOR_NETLOOP_H_

#include "reactor/conn.h"
#include "reactor/engine.h"
#include "reactor/errors.h"
#include "reactor/event_handler.h"
#include "reactor/event_loop.h"
#include "reactor/logging.h"
#include "reactor/options.h"

#endif  // NETLOOP_REACTOR_NETLOOP_H_
