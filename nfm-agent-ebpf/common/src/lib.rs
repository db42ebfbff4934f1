//! Types shared by the sock_ops program and the agent: skeleton until the agent issue lands.
#![no_std]
